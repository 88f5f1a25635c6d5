"""The types every reward shares: a reward function is a plain callable
`(sample: dict, cfg: RewardsConfig) -> RewardResult`; rewards.registry says,
per kind, which function scores it and how the hub runs it.

A sample is a plain dict: {"kind", "response", "answer" (math), "tests"
(code), "length" (optional token count)}; other keys are carried along.
`details` always has `correct` (bool for verifiable kinds, None otherwise),
`terms` (term name -> unweighted score) and `timeout`; `error` when a sample
could not be scored.

Failures are never a reward: a result carrying `error` (every `failed()`
result does, and a checker that ran out of time sets `timeout` beside it) is
`masked`: the trainer gives its sample no reward at all (not 0), leaves it
out of its group's baseline and of the loss, and counts it. A `timeout`
without `error` is a verdict, not a failure: a code program that ran past its
sandbox limit failed its tests, and masking it would let a policy escape a
wrong answer by looping forever.

Checker failures follow one rule, the same for every kind (code, math, the
judges and any later one), because an RL policy learns whatever escapes its
penalty: if an answer that breaks its checker were masked, an unsure policy
would learn to write such answers. So a check that fails (raises, runs out
of time or memory, dies) is run once more *alone*, on a fresh worker, under
a limit of CPU seconds rather than wall time:

- the second run gives a verdict: that verdict is the result;
- it fails again in a way the sample's content decides (the CPU-seconds or
  memory limit, a crash of the checker, an exception raised while checking
  this response): the sample scores 0 *as a verdict* (`content_failure`:
  unmasked, `correct` False, `details.checker_failure` says why);
- it fails in a way the content cannot cause (a worker killed from outside,
  a wall-clock limit hit within the CPU budget on a loaded machine, a sandbox
  that could not start, a dead judge engine, a broken reference answer or
  test): the sample is masked (`failed`) and counted.

`details.retried` is True on every sample that took the second run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

Sample = dict[str, Any]
RewardFn = Callable[[Sample, Any], "RewardResult"]  # (sample, RewardsConfig)


@dataclass
class RewardResult:
    """Score of one sample and why."""

    score: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def masked(self) -> bool:
        """The one rule: the sample could not be scored (see the module docstring)."""
        return bool(self.details.get("error"))

    @property
    def mask_reason(self) -> str | None:
        """"timeout" or "error" for a masked result, else None."""
        if not self.masked:
            return None
        return "timeout" if self.details.get("timeout") else "error"

    def to_json(self) -> dict[str, Any]:
        return {"reward": self.score, "details": self.details}


def failed(error: str, *, timeout: bool = False, correct: bool | None = None) -> RewardResult:
    """A result that could not be scored, carrying the reason; it is `masked`
    (its 0 score is a placeholder the trainer never uses)."""
    details: dict[str, Any] = {"correct": correct, "timeout": timeout, "error": error, "terms": {}}
    return RewardResult(0.0, details)


def content_failure(reason: str, *, timeout: bool = False, **details: Any) -> RewardResult:
    """A verdict of 0 for a sample whose own content made its checker fail
    twice, the second time alone under a CPU-seconds limit (the rule in the
    module docstring). Unmasked: the learner trains on it as a wrong answer."""
    out: dict[str, Any] = {"correct": False, "timeout": timeout, "checker_failure": reason, "retried": True,
                           "terms": {}}
    out.update(details)
    return RewardResult(0.0, out)


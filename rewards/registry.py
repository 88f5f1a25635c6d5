"""The reward kinds and how a scorer runs each: the registry IS the dispatch.

`KINDS` maps each kind a sample may name to the factory of its runner,
`make(cfg, metrics) -> Runner`; its keys are the one list of kinds (the
config's `terms` and the scorer's unknown-kind message read it). The kind
modules (rewards.math, rewards.code, rewards.format, rewards.reasoning_gym,
rewards.judge) hold the
plain reward functions and import nothing from here; this module imports
them and says how the hub runs them, so adding a kind is one function and
one line below. A recipe's own functions (`rewards.custom`) are kinds too,
added per config by the scorer with the same runner as `reasoning_gym`
(rewards.custom.FunctionRunner).

A scorer (rewards.scorer) builds one runner per kind and scores a batch in
two passes, so slow kinds overlap: every sample is first `start`ed on its
kind's runner (an inline kind decides there; the others note in `pending`
what they still have to do, a code runner already running it on its
threads), then each runner, in the order of `KINDS`, `finish`es what it
kept.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Optional, Protocol

from rewards import reasoning_gym
from rewards.code import score_code
from rewards.custom import FunctionRunner
from rewards.format import format_reward
from rewards.judge.config import JUDGE_KINDS
from rewards.math_pool import MathRunner
from rewards.types import RewardFn, RewardResult, Sample, failed


class Runner(Protocol):
    """One kind's runner in one scorer; it owns that kind's workers or threads."""

    def start(self, i: int, sample: Sample, pending: list) -> Optional[RewardResult]:
        """Sample `i`'s result when decided now, else None once `pending`
        (this batch's list for this kind) notes what `finish` needs."""

    def finish(self, pending: list) -> Iterator[tuple[int, RewardResult]]:
        """(sample index, result) of each sample kept in `pending`, as each is decided."""

    def close(self) -> None:
        """Stop what the runner started."""


class Inline:
    """A kind scored at once, in the scorer's thread: a linear-time check."""

    def __init__(self, score: RewardFn, cfg):
        self.score = score
        self.cfg = cfg

    def start(self, i: int, sample: Sample, pending: list) -> Optional[RewardResult]:
        return self.score(sample, self.cfg)

    def finish(self, pending: list) -> Iterator[tuple[int, RewardResult]]:
        return iter(())

    def close(self) -> None:
        pass


class Sandboxed:
    """A kind run on `cfg.sandbox.concurrency` threads, each waiting on a
    sandbox that bounds its own time (rewards.sandbox). A runner that raises
    fails its sample (masked) and the batch goes on."""

    def __init__(self, kind: str, score: RewardFn, cfg):
        self.kind = kind
        self.score = score
        self.cfg = cfg
        self._threads = ThreadPoolExecutor(cfg.sandbox.concurrency, thread_name_prefix="sandbox")

    def start(self, i: int, sample: Sample, pending: list) -> Optional[RewardResult]:
        pending.append((i, self._threads.submit(self.score, sample, self.cfg)))
        return None

    def finish(self, pending: list) -> Iterator[tuple[int, RewardResult]]:
        for i, future in pending:
            try:
                result = future.result()
            except Exception as err:  # noqa: BLE001  (a sandbox bug scores 0, the batch goes on)
                result = failed(f"{self.kind} scoring failed: {type(err).__name__}: {err}")
            yield i, result

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def judged_later(sample: Sample, cfg) -> RewardResult:
    """A judge kind's placeholder: the judge terms (rewards.judge.terms), asked
    before the batch is scored, put the engines' score in after it."""
    return RewardResult(0.0, {"correct": None, "timeout": False})


def _inline(score: RewardFn) -> Callable[..., Runner]:
    return lambda cfg, metrics: Inline(score, cfg)


KINDS: dict[str, Callable[..., Runner]] = {
    "math": MathRunner,
    "code": lambda cfg, metrics: Sandboxed("code", score_code, cfg),
    "format": _inline(format_reward),
    "reasoning_gym": lambda cfg, metrics: FunctionRunner("reasoning_gym", reasoning_gym.TARGET, "sample", cfg,
                                                         settings={"answer_pattern": cfg.answer_pattern}),
    **{kind: _inline(judged_later) for kind in JUDGE_KINDS},
}


def unknown_kind(kind, known=KINDS) -> str:
    """The one-line failure of a sample whose kind is not registered (`known`:
    the kinds a scorer has, the registry's and its config's own functions)."""
    return f"unknown kind {kind!r} (known: {', '.join(sorted(known))})"

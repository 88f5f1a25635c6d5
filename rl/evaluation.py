"""Held-out evaluation: one job on the rollout engines at the weights of one
learner step, either waited for (the learner idles while it generates) or
interleaved with training (`eval.interleave`).

Interleaved, the job is submitted as soon as step v's weights are in the
engines and the loop goes on training. The engines keep version v until the
evaluation lands (no weights are pushed while it generates, so every sample
is version v's), which they may as long as the next step's rollouts can still
be generated at v (`RolloutSchedule.runs_at`): with max_off_policy_steps = k
the learner trains up to k + 1 steps meanwhile. The metrics rows of those
steps are held and written in order when it lands (the evaluation belongs to
step v's row, with step v's compute as its x), and a checkpoint, the run's
end or a stop lands it first, so no checkpoint holds an evaluation half done.

An evaluation's cost is not training compute. Waited for, all device time
spent while it runs is dropped. Interleaved, the engines generated training
jobs too: the evaluation's share is estimated as its share of the tokens the
engines generated meanwhile, applied to the rollout side's device time (on
CPU the rollout workers' and the reward hub's core-seconds, on GPU the
rollout GPUs' wall time: not run here, no GPU was lent), and taken out of
the ledger; the held rows are corrected pro rata by time. A test checks the
estimate against what the run's last evaluation, waited for, cost. Judge
usage while an interleaved evaluation runs stays in the judge columns (not
the default x).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from rl.step_metrics import eval_counts, eval_metrics
from rollout.types import RolloutBatch


@dataclass
class PendingEval:
    step: int  # the weight version it evaluates
    parts: list  # the fleet's job parts
    t0: float
    totals: dict  # the ledger when it was submitted: the point's x
    interleaved: bool = False
    rollout0: float = 0.0  # rollout-side device seconds then (interleaved)
    tokens0: int = 0  # tokens the engines had generated then (interleaved)
    rows: list = field(default_factory=list)  # (time, metrics row) held until it lands


@dataclass
class Landed:
    result: RolloutBatch
    counts: dict  # per-prompt results (evals.jsonl)
    metrics: dict  # eval/*, time/eval and (interleaved) time/eval_device_seconds, the estimated share


class Evaluator:
    def __init__(self, recipe, fleet, hub, render: Callable[[str], list[int]], val_prompts: list[dict],
                 rollout_gpus: float = 0.0):
        self.recipe, self.fleet, self.hub, self.render = recipe, fleet, hub, render
        ev = recipe.eval
        self.rows = val_prompts[: ev.prompts] if ev.prompts else val_prompts
        self.rollout_gpus = rollout_gpus

    def submit(self, step: int, totals: dict, interleaved: bool = False) -> PendingEval:
        """Start evaluating the engines' weights, version `step`; `totals` is the
        ledger now; `interleaved`: training goes on while it generates."""
        ev = self.recipe.eval
        ids = [self.render(row["prompt"]) for row in self.rows]
        rollout0, tokens0 = self._rollout_side() if interleaved else (0.0, 0)
        parts = self.fleet.submit(f"eval/{step}", step, self.rows, ids, ev.k, ev.temperature,
                                  min_version=step, priority=1, partial=False)
        return PendingEval(step, parts, time.perf_counter(), dict(totals), interleaved, rollout0, tokens0)

    def ready(self, pending: PendingEval) -> bool:
        return self.fleet.ready(pending.parts)

    def land(self, pending: PendingEval) -> Landed:
        """Wait for the evaluation (if it is still generating) and score it."""
        result = self.fleet.collect(pending.parts)
        counts = eval_counts(result)
        out = eval_metrics(result, counts)
        out["time/eval"] = time.perf_counter() - pending.t0
        # tokens not made by the evaluated weights (0 unless weights reached the engines mid-evaluation)
        out["eval/off_version_tokens"] = sum(v != pending.step for s in result.samples for v in s.versions)
        if pending.interleaved:  # estimated, taken out of training compute
            out["time/eval_device_seconds"] = self._share(pending, result)
        return Landed(result, counts, out)

    def _rollout_side(self) -> tuple[float, int]:
        tokens = self.fleet.generated_tokens()
        if self.rollout_gpus:
            return time.perf_counter() * self.rollout_gpus, tokens
        return self.fleet.cpu_seconds() + self.hub.cpu_seconds(), tokens

    def _share(self, pending: PendingEval, result: RolloutBatch) -> float:
        seconds, tokens = self._rollout_side()
        mine = sum(len(s.token_ids) for s in result.samples)
        window = tokens - pending.tokens0  # a replaced engine restarts its count: at most all of it
        share = min(1.0, mine / window) if window > 0 else 1.0
        return max(0.0, seconds - pending.rollout0) * share

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

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from rl.metrics_log import MetricsLog
from rl.step_metrics import eval_counts, eval_metrics
from rollout.types import RolloutBatch

log = logging.getLogger(__name__)


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
    """When to evaluate and what an evaluation leaves behind: every
    `eval.every` steps and at the run's last, waited for or interleaved; the
    point in run_state and evals.jsonl, the live fit's new input, the
    mismatch probe's batch (the first evaluation's), its cost out of the
    compute account."""

    def __init__(self, recipe, fleet, render: Callable[[str], list[int]], val_prompts: list[dict], *,
                 state, account, log, fitter, run_dir: Path):
        self.recipe, self.fleet, self.render = recipe, fleet, render
        self.state, self.account, self.log, self.fitter, self.run_dir = state, account, log, fitter, run_dir
        ev = recipe.eval
        self.rows = val_prompts[: ev.prompts] if ev.prompts else val_prompts
        self.pending: Optional[PendingEval] = None  # an interleaved evaluation in flight

    # ---- when -----------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Step `step`'s weights are evaluated: every `eval.every` steps and the last."""
        return step % self.recipe.eval.every == 0 or step == self.recipe.run.steps

    def frees_engines(self, step: int, due: bool, schedule) -> bool:
        """May step `step`'s weights go to the engines now? An interleaved
        evaluation holds them at its version while the next steps' rollouts
        can still be generated there (`schedule.runs_at`); else it lands now."""
        if self.pending is None:
            return True
        if due or self.ready(self.pending) or not schedule.runs_at(step, self.pending.step):
            self.land_pending()
            return True
        return False

    def after_step(self, step: int, due: bool, metrics: dict) -> None:
        """Evaluate step `step`'s weights if `due`: interleaved (submitted now,
        landed later), or waited for, its metrics joining the step's row."""
        if due and self.recipe.eval.interleave and step < self.recipe.run.steps:
            self.pending = self.submit(step, self.account.totals(), interleaved=True)
        elif due:
            metrics.update(self.evaluate(step))

    def hold(self, row: dict) -> bool:
        """Hold a step's row while an evaluation is in flight (written, in
        order, when it lands); False when none is."""
        if self.pending is None:
            return False
        self.pending.rows.append((time.perf_counter(), row))
        return True

    # ---- waited for, or landed ------------------------------------------------
    def evaluate(self, step: int) -> dict:
        """Evaluate step `step`'s weights while the learner waits. The step's
        accounting has just run: its totals are the point's x."""
        out = self._record(self.submit(step, self.account.totals()))
        out["time/eval_device_seconds"] = self.account.leave_out()  # not training compute,
        self.account.leave_out_judging()  # nor is its judging (a judge term scores evaluation samples too)
        return out

    def land_pending(self) -> None:
        """Finish the interleaved evaluation, if one is in flight (waiting if
        it still generates), take its share out of training compute, write
        the rows held for it."""
        if self.pending is None:
            return
        pending, self.pending = self.pending, None
        self.account.credit()  # the window's device time is in the ledger before a share leaves it
        out = self._record(pending)
        cost, span = out.get("time/eval_device_seconds", 0.0), max(time.perf_counter() - pending.t0, 1e-9)
        self.account.exclude(cost)
        for i, (t, row) in enumerate(pending.rows):
            if i == 0:
                row.update(out)  # step `pending.step`'s row: the evaluation's own
            elif "compute/device_seconds" in row:  # the share spent by then, pro rata by time
                row["compute/device_seconds"] = max(0.0, row["compute/device_seconds"]
                                                    - cost * min(1.0, (t - pending.t0) / span))
                row["compute/device_hours"] = row["compute/device_seconds"] / 3600.0
            self.log.write(row, progress=False)

    def _record(self, pending: PendingEval) -> dict:
        landed = self.land(pending)
        if self.state.probe is None:
            self.state.probe = probe_batch(landed.result)
        out, step, ev = landed.metrics, pending.step, self.recipe.eval
        if "eval/pass_rate" in out:
            self.state.evals.append({"step": step, "y": out["eval/pass_rate"], **pending.totals})
            # per-prompt results: the fit weighs each point by its own sampling noise
            # (a sample whose reward failed is left out of its prompt's rate: rl.step_metrics.eval_counts)
            MetricsLog.append(self.run_dir, "evals.jsonl", {
                "step": step, "k": ev.k, "temperature": ev.temperature, **landed.counts, **pending.totals})
            refit(self.fitter, self.state.evals, self.recipe.monitor.x_axis)
        else:  # every reward failed: a point of 0 would be a failure made data
            log.warning("evaluation at step %d: no sample was scored (%d masked); it is left out of the "
                        "curve and the fit", step, out["eval/masked"])
        return out

    # ---- one job on the engines -------------------------------------------------
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
        return self.account.rollout_seconds(), tokens

    def _share(self, pending: PendingEval, result: RolloutBatch) -> float:
        seconds, tokens = self._rollout_side()
        mine = sum(len(s.token_ids) for s in result.samples)
        window = tokens - pending.tokens0  # a replaced engine restarts its count: at most all of it
        share = min(1.0, mine / window) if window > 0 else 1.0
        return max(0.0, seconds - pending.rollout0) * share


def refit(fitter, evals: list[dict], x_axis: str) -> None:
    """Give the live fit every evaluation so far, on the recipe's x axis."""
    if fitter is not None and evals:
        axis = f"compute/{x_axis}"
        fitter.submit([{"step": p["step"], "x": p.get(axis, 0.0), "y": p["y"]} for p in evals])


def probe_batch(result: RolloutBatch, size: int = 8) -> dict:
    """The mismatch probe's fixed batch (rl.controller): the first sample of
    up to `size` groups of an evaluation."""
    groups = [g for g in result.groups if g.samples and g.samples[0].token_ids][:size]
    return {"prompts": [list(g.prompt_ids) for g in groups],
            "completions": [list(g.samples[0].token_ids) for g in groups]}

"""The training loop, readable top to bottom: place actors, run the
generation -> reward -> train -> weight-sync pipeline, evaluate (waited for,
or interleaved with training: rl.evaluation), log, checkpoint.

Asynchrony is the normal case. With `max_off_policy_steps = k` the
controller keeps the rollout jobs for steps s..s+k in flight while the
learner trains step s; the job for step t enters an engine only once that
engine's weights are at least version t-k, so no sample is more than k
versions old (k = 0 is synchronous on-policy). New weights are pushed into
engines between decode steps while generations are in flight (PipelineRL).

The run survives its parts failing (docs/resume.md): a dead rollout worker is
replaced by the fleet (rl.fleet), a dead hub replica by Ray; a dead learner
rank stops the run with a one-line message and its last checkpoint, or
restarts everything from that checkpoint up to `run.max_restarts` times.
SIGINT/SIGTERM checkpoint at the end of the current step, then stop.
Checkpoints are atomic (rl.checkpoint); a resume rolls metrics.jsonl back to
the checkpoint's step, so every step is logged exactly once.

What one start of the run holds is built and released by rl.run_context;
what a step spent is counted by rl.compute_account; when to evaluate is
rl.evaluation's. This class is the loop.
"""
from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path
from typing import Optional

import torch

from core.errors import RunStopped
from rl.algo.batch import build_train_batch
from rl.checkpoint import CheckpointStore
from rl.fleet import RolloutFailed
from rl.learner.group import LearnerFailure
from rl.recipe import Recipe
from rl.run_context import RunContext, StopSignals, open_run
from rl.schedule import RolloutSchedule
from rl.step_metrics import data_metrics, reward_warnings, rollout_metrics
from rollout.types import RolloutBatch

log = logging.getLogger(__name__)


class Controller:
    def __init__(self, recipe: Recipe, run_dir: Path, address: Optional[str] = None):
        self.recipe, self.run_dir = recipe, Path(run_dir)
        self.address = address or recipe.cluster.address
        self.signals = StopSignals()
        self.ctx: Optional[RunContext] = None  # while a start of the run is open (rl.run_context)
        self._truncation_above = False

    # ---- the whole run ------------------------------------------------------
    def run(self) -> dict:
        done = self._finished_summary()
        if done is not None:  # relaunching a complete run only reports it
            return done
        restarts = 0
        while True:
            try:
                self.ctx = open_run(self.recipe, self.run_dir, self.address, self.signals, restarting=restarts > 0)
                return self._loop()
            except RolloutFailed as err:
                raise self._stopped_by(err) from None
            except LearnerFailure as err:
                if restarts >= self.recipe.run.max_restarts:
                    raise self._stopped_by(err) from None
                restarts += 1
                log.warning("%s: restarting from the last checkpoint (%d of %d)", err, restarts,
                            self.recipe.run.max_restarts)
            finally:
                self.signals.release()
                if self.ctx is not None:
                    self.ctx.close()
                    self.ctx = None

    def _loop(self) -> dict:
        ctx, r, st = self.ctx, self.recipe, self.ctx.state
        k, total = r.pipeline.max_off_policy_steps, r.run.steps
        if st.step == 0 and not st.evals:
            before = ctx.account.totals()  # step 0 has spent nothing: not even its own evaluation
            self._log(ctx.evaluator.evaluate(step=0) | before | {"step": 0})
        schedule = RolloutSchedule(r, st, ctx.fleet, render=ctx.render)
        updated, t_loop = False, time.perf_counter()  # weights changed since the engines last got them
        while st.step < total:
            step = st.step
            t0 = time.perf_counter()
            schedule.fill(step)
            rollout, shaping = schedule.take(step)
            t_gen = time.perf_counter()
            batch = build_train_batch(rollout.groups, r.algo, ctx.pad_id)
            train = ctx.learner.train_step(batch)
            ctx.writer.seal()  # a checkpoint written in the background during that step
            updated |= batch is not None
            t_train = time.perf_counter()
            eval_due = ctx.evaluator.due(step + 1)
            synced = schedule.sync_due(step + 1) or eval_due
            # an interleaved evaluation may hold the engines at its version a while longer
            synced = synced and ctx.evaluator.frees_engines(step + 1, eval_due, schedule)
            updated_now = updated
            if synced:
                ctx.fleet.sync(version=step + 1, skipped=not updated)
                updated = False
                schedule.fill(step + 1)  # the next job is queued before the bookkeeping below
            t_sync = time.perf_counter()
            probe = self._probe_mismatch() if synced else {}
            st.step = step + 1
            metrics = {"step": st.step, "policy_version": st.step, **train, **shaping, "pipeline/synced": int(synced),
                       **rollout_metrics(rollout, step, k), **data_metrics(rollout, batch, st.sampler),
                       "time/wait_rollout": t_gen - t0, "time/train": t_train - t_gen,
                       "time/weight_sync": t_sync - t_train, **probe, **ctx.utilisation.read()}
            if synced and updated_now:
                metrics["sync/gb_per_s"] = ctx.weight_bytes / 1e9 / max(t_sync - t_train, 1e-9)
            metrics.update(ctx.account.step(rollout, batch, dropped=shaping.get("rollout/gen_tokens_dropped", 0)))
            st.faults["hub_restarts"] = ctx.account.hub_restarts()
            self._warn_truncation(metrics)
            self._warn_rewards(metrics, rollout, trained=batch is not None)
            ctx.evaluator.after_step(st.step, eval_due, metrics)
            metrics["time/step"], metrics["time/elapsed"] = time.perf_counter() - t0, time.perf_counter() - t_loop
            metrics.update(st.fault_metrics())
            self._log(metrics)
            self._checkpoint_or_stop(metrics)
        return self._summary()

    def _checkpoint_or_stop(self, metrics: dict) -> None:
        """Checkpoint every `run.checkpoint_every` steps, at the end and on a
        signal (with the step's pass rate, if it has one); a signal then stops
        the run."""
        r, st, stop = self.recipe, self.ctx.state, self.signals.received is not None
        total = r.run.steps
        if (r.run.checkpoint_every and st.step % r.run.checkpoint_every == 0) or st.step == total or stop:
            self.ctx.evaluator.land_pending()  # a checkpoint never holds an evaluation half done
            self._checkpoint(metrics.get("eval/pass_rate"), r.run.async_checkpoint and st.step < total and not stop)
        if stop and st.step < total:
            name = signal.Signals(self.signals.received).name
            raise RunStopped(f"stopped by {name} after step {st.step}. {self._resume_hint()}")

    # ---- pipeline -------------------------------------------------------------
    def _probe_mismatch(self) -> dict:
        """Score one fixed batch with every engine and with the learner right
        after a weight sync: the train-inference mismatch, every step."""
        ctx = self.ctx
        probe = ctx.state.probe
        if not probe:
            return {}
        prompts, completions = probe["prompts"], probe["completions"]
        seqs = [p + c for p, c in zip(prompts, completions)]
        ids = torch.full((len(seqs), max(map(len, seqs))), ctx.pad_id, dtype=torch.long)
        for i, seq in enumerate(seqs):
            ids[i, :len(seq)] = torch.tensor(seq)
        learner_refs = ctx.learner.score_tokens_refs(ids)  # the learner scores while the engines do
        engines = ctx.fleet.score(prompts, completions, self.recipe.rollout.temperature)
        learner_lp = ctx.learner.wait(learner_refs)[0]
        worst, total, count = 0.0, 0.0, 0
        for _, engine_lp in engines:
            for i, (p, lps) in enumerate(zip(prompts, engine_lp)):
                diff = (learner_lp[i, len(p):len(p) + len(lps)] - torch.tensor(lps)).abs()
                worst, total, count = max(worst, float(diff.max())), total + float(diff.sum()), count + len(lps)
        return {"mismatch/probe_abs_logprob": total / max(count, 1), "mismatch/probe_max_abs_logprob": worst}

    # ---- warnings, logging, checkpoints ---------------------------------------
    def _warn_rewards(self, metrics: dict, rollout: RolloutBatch, trained: bool) -> None:
        """Failures are never a reward, and no step is skipped silently."""
        faults = self.ctx.state.faults
        metrics["train/skipped"] = int(not trained)  # fault/skipped_steps: the running count
        faults["skipped_steps"] = faults.get("skipped_steps", 0) + (not trained)
        for line in reward_warnings(metrics, len(rollout.samples), self.recipe.monitor.mask_warn, trained):
            self.ctx.progress.warn(line)

    def _warn_truncation(self, metrics: dict) -> None:
        """ScaleRL saw truncation rates of 10-15% precede instability."""
        rate, limit = metrics.get("rollout/truncation_rate"), self.recipe.monitor.truncation_warn
        above = rate is not None and limit is not None and rate > limit
        warned, self._truncation_above = self._truncation_above, above
        if above and not warned:  # once per crossing, not every step
            self.ctx.progress.warn(f"warning: step {metrics['step']}: {rate:.0%} of responses were truncated at "
                                   f"rollout.max_new_tokens (above monitor.truncation_warn={limit:.0%}; "
                                   "ScaleRL saw 10-15% precede instability)")

    def _log(self, metrics: dict) -> None:
        if self.ctx.evaluator.hold(metrics):  # written when the evaluation in flight lands, in order
            self.ctx.progress.update(metrics)
        else:
            self.ctx.log.write(metrics, progress=True)

    def _checkpoint(self, eval_score: Optional[float], background: bool) -> None:
        ctx = self.ctx

        def state() -> str:  # the time since the step's accounting (evaluation, shards) belongs to the saved ledger
            ctx.account.credit()
            return json.dumps(ctx.state.state_dict())

        ctx.writer.write(ctx.state.step, eval_score, state, background)

    def _summary(self) -> dict:
        st, fitter = self.ctx.state, self.ctx.fitter
        evals = st.evals
        out = {"steps": st.step, "pass_rate_start": evals[0]["y"] if evals else None,
               "pass_rate_end": evals[-1]["y"] if evals else None, "run_dir": str(self.run_dir),
               **st.fault_metrics()}
        if fitter is not None:
            fitter.close()
            out.update(fitter.latest())
        (self.run_dir / "summary.json").write_text(json.dumps(out, indent=2))
        return out

    def _finished_summary(self) -> Optional[dict]:
        path = self.run_dir / "summary.json"
        if not path.is_file():
            return None
        summary = json.loads(path.read_text())
        return summary if summary.get("steps", 0) >= self.recipe.run.steps else None

    # ---- stopping -------------------------------------------------------------
    def _stopped_by(self, err: Exception) -> RunStopped:
        """The one line a fault the run cannot recover from ends it with."""
        last = self._last_checkpoint()
        # failing while it started, the run was at the checkpoint it resumed from
        step = self.ctx.state.step if self.ctx is not None else (last.step if last else 0)
        return RunStopped(f"{err} at step {step + 1}; the run stopped. {self._resume_hint(last)}")

    def _resume_hint(self, last=None) -> str:
        """How to go on, from `last` (the newest valid checkpoint, looked up when not given)."""
        last = last if last is not None else self._last_checkpoint()
        where = f"from the checkpoint of step {last.step}" if last else "from the start (no checkpoint yet)"
        return f"`asymptote resume {self.run_dir}` continues {where}"

    def _last_checkpoint(self):
        return CheckpointStore(self.run_dir, checksums=self.recipe.run.checkpoint_checksums,
                               warn=lambda m: None).latest()

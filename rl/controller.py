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
"""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Optional

import ray
import torch
from transformers import AutoTokenizer
from ray.util.placement_group import remove_placement_group

from rewards.hub import start_hub
from rl.algo.batch import build_train_batch
from rl.base.build import resolve_base
from rl.checkpoint import CheckpointStore
from rl.checkpoint_writer import CheckpointWriter
from rl.data.datasets import load_splits, render_prompt
from rl.data.sampler import PromptSampler
from core.errors import RunStopped, error_line
from rl.evaluation import Evaluator
from rl.fleet import Fleet, RolloutFailed
from rl.learner.dist import resolve_backend
from rl.learner.group import LearnerFailure, LearnerGroup
from rl.metrics_log import MetricsLog
from core.clocks import ThreadClock
from rl.monitor.ledger import ComputeLedger
from rl.monitor.utilisation import UtilisationProbe, step_flops
from rl.monitor.judge_compute import JudgeMeter
from rl.monitor.live import LiveFitter
from rl.placement import local_cluster_cpus, place, plan_resources
from rl.progress import ProgressLine
from rl.recipe import Recipe, to_yaml
from rl.run_state import RunState
from rl.schedule import RolloutSchedule
from rl.step_metrics import data_metrics, reward_warnings, rollout_metrics
from rollout.types import RolloutBatch

log = logging.getLogger(__name__)

class Controller:
    def __init__(self, recipe: Recipe, run_dir: Path, address: Optional[str] = None):
        self.recipe, self.run_dir = recipe, Path(run_dir)
        self.address = address or recipe.cluster.address
        self._restarting = False  # the next start is an automatic restart after a learner failure
        self._signal: Optional[int] = None

    # ---- the whole run ------------------------------------------------------
    def run(self) -> dict:
        done = self._finished_summary()
        if done is not None:  # relaunching a complete run only reports it
            return done
        restarts = 0
        while True:
            try:
                self._start()
                return self._loop()
            except RolloutFailed as err:
                raise self._stopped_by(err) from None
            except LearnerFailure as err:
                if restarts >= self.recipe.run.max_restarts:
                    raise self._stopped_by(err) from None
                restarts += 1
                self._restarting = True
                log.warning("%s: restarting from the last checkpoint (%d of %d)", err, restarts,
                            self.recipe.run.max_restarts)
            finally:
                self._stop()

    def _loop(self) -> dict:
        r, st = self.recipe, self.state
        k, total = r.pipeline.max_off_policy_steps, r.run.steps
        if st.step == 0 and not st.evals:
            before = self.state.ledger.totals()  # step 0 has spent nothing: not even its own evaluation
            self._log(self._evaluate(step=0) | before | {"step": 0})
        schedule = RolloutSchedule(r, st, self.fleet, render=lambda text: render_prompt(self.tokenizer, text))
        updated, t_loop = False, time.perf_counter()  # weights changed since the engines last got them
        while st.step < total:
            step = st.step
            t0 = time.perf_counter()
            schedule.fill(step)
            rollout, shaping = schedule.take(step)
            t_gen = time.perf_counter()
            batch = build_train_batch(rollout.groups, r.algo, self.pad_id)
            train = self.learner.train_step(batch)
            self.writer.seal()  # a checkpoint written in the background during that step
            updated |= batch is not None
            t_train = time.perf_counter()
            eval_due = (step + 1) % r.eval.every == 0 or step + 1 == total
            synced = schedule.sync_due(step + 1) or eval_due
            if synced and self._pending is not None:  # an evaluation holds the engines at its version
                if eval_due or self.evaluator.ready(self._pending) or not schedule.runs_at(step + 1,
                                                                                          self._pending.step):
                    self._land_eval()
                else:
                    synced = False  # the next steps' rollouts can still be generated at that version
            updated_now = updated
            if synced:
                self.fleet.sync(version=step + 1, skipped=not updated)
                updated = False
                schedule.fill(step + 1)  # the next job is queued before the bookkeeping below
            t_sync = time.perf_counter()
            probe = self._probe_mismatch() if synced else {}
            st.step = step + 1
            metrics = {"step": st.step, "policy_version": st.step, **train, **shaping, "pipeline/synced": int(synced),
                       **rollout_metrics(rollout, step, k), **data_metrics(rollout, batch, st.sampler),
                       "time/wait_rollout": t_gen - t0, "time/train": t_train - t_gen,
                       "time/weight_sync": t_sync - t_train, **probe, **self.utilisation.read()}
            if synced and updated_now:
                metrics["sync/gb_per_s"] = self.weight_bytes / 1e9 / max(t_sync - t_train, 1e-9)
            metrics.update(self._account(rollout, batch, dropped=shaping.get("rollout/gen_tokens_dropped", 0)))
            self._warn_truncation(metrics)
            self._warn_rewards(metrics, rollout, trained=batch is not None)
            if eval_due and r.eval.interleave and st.step < total:
                self._pending = self.evaluator.submit(st.step, st.ledger.totals(), interleaved=True)
            elif eval_due:
                metrics.update(self._evaluate(step=st.step))
            metrics["time/step"], metrics["time/elapsed"] = time.perf_counter() - t0, time.perf_counter() - t_loop
            metrics.update(st.fault_metrics())
            self._log(metrics)
            stop = self._signal is not None
            if (r.run.checkpoint_every and st.step % r.run.checkpoint_every == 0) or st.step == total or stop:
                if self._pending is not None:  # a checkpoint never holds an evaluation half done
                    self._land_eval()
                self._checkpoint(metrics.get("eval/pass_rate"), r.run.async_checkpoint and st.step < total and not stop)
            if stop and st.step < total:
                name = signal.Signals(self._signal).name
                raise RunStopped(f"stopped by {name} after step {st.step}. {self._resume_hint()}")
        return self._summary()

    # ---- pipeline -------------------------------------------------------------
    def _probe_mismatch(self) -> dict:
        """Score one fixed batch with every engine and with the learner right
        after a weight sync: the train-inference mismatch, every step."""
        probe = self.state.probe
        if not probe:
            return {}
        prompts, completions = probe["prompts"], probe["completions"]
        seqs = [p + c for p, c in zip(prompts, completions)]
        ids = torch.full((len(seqs), max(map(len, seqs))), self.pad_id, dtype=torch.long)
        for i, seq in enumerate(seqs):
            ids[i, :len(seq)] = torch.tensor(seq)
        learner_refs = self.learner.score_tokens_refs(ids)  # the learner scores while the engines do
        engines = self.fleet.score(prompts, completions, self.recipe.rollout.temperature)
        learner_lp = self.learner.wait(learner_refs)[0]
        worst, total, count = 0.0, 0.0, 0
        for _, engine_lp in engines:
            for i, (p, lps) in enumerate(zip(prompts, engine_lp)):
                diff = (learner_lp[i, len(p):len(p) + len(lps)] - torch.tensor(lps)).abs()
                worst, total, count = max(worst, float(diff.max())), total + float(diff.sum()), count + len(lps)
        return {"mismatch/probe_abs_logprob": total / max(count, 1), "mismatch/probe_max_abs_logprob": worst}

    def _set_probe(self, result: RolloutBatch, size: int = 8) -> None:
        groups = [g for g in result.groups if g.samples and g.samples[0].token_ids][:size]
        self.state.probe = {"prompts": [list(g.prompt_ids) for g in groups],
                            "completions": [list(g.samples[0].token_ids) for g in groups]}

    # ---- evaluation, accounting, logging -------------------------------------
    def _evaluate(self, step: int) -> dict:
        """Evaluate step `step`'s weights while the learner waits (rl.evaluation).
        The step's accounting has just run: its totals are the point's x."""
        out = self._record_eval(self.evaluator.submit(step, self.state.ledger.totals()))
        out["time/eval_device_seconds"] = self._spent_device_seconds()  # not training compute,
        self._judge_usage()  # nor is its judging (a judge term scores evaluation samples too)
        return out

    def _land_eval(self) -> None:
        """Finish the interleaved evaluation (waiting if it still generates),
        take its share out of training compute, write the rows held for it."""
        pending, self._pending = self._pending, None
        self._credit_training_time()  # the window's device time is in the ledger before a share leaves it
        out = self._record_eval(pending)
        cost, span = out.get("time/eval_device_seconds", 0.0), max(time.perf_counter() - pending.t0, 1e-9)
        self.state.ledger.exclude(cost)
        for i, (t, row) in enumerate(pending.rows):
            if i == 0:
                row.update(out)  # step `pending.step`'s row: the evaluation's own
            elif "compute/device_seconds" in row:  # the share spent by then, pro rata by time
                row["compute/device_seconds"] = max(0.0, row["compute/device_seconds"]
                                                    - cost * min(1.0, (t - pending.t0) / span))
                row["compute/device_hours"] = row["compute/device_seconds"] / 3600.0
            self._write(row, progress=False)

    def _record_eval(self, pending) -> dict:
        landed = self.evaluator.land(pending)
        if self.state.probe is None:
            self._set_probe(landed.result)
        out, step, ev = landed.metrics, pending.step, self.recipe.eval
        if "eval/pass_rate" in out:
            self.state.evals.append({"step": step, "y": out["eval/pass_rate"], **pending.totals})
            # per-prompt results: the fit weighs each point by its own sampling noise
            # (a sample whose reward failed is left out of its prompt's rate: rl.step_metrics.eval_counts)
            MetricsLog.append(self.run_dir, "evals.jsonl", {
                "step": step, "k": ev.k, "temperature": ev.temperature, **landed.counts, **pending.totals})
            self._refit()
        else:  # every reward failed: a point of 0 would be a failure made data
            log.warning("evaluation at step %d: no sample was scored (%d masked); it is left out of the "
                        "curve and the fit", step, out["eval/masked"])
        return out

    def _credit_training_time(self) -> None:
        """Device time since the last accounting into the ledger now, so what
        follows (an evaluation, the report) can be left out."""
        self.state.ledger.add(device_seconds=self._spent_device_seconds(), gen_tokens=0, train_tokens=0,
                              gen_flops=0.0, train_flops=0.0)

    def _refit(self) -> None:
        if self.fitter is not None and self.state.evals:
            axis = f"compute/{self.recipe.monitor.x_axis}"
            self.fitter.submit([{"step": p["step"], "x": p.get(axis, 0.0), "y": p["y"]} for p in self.state.evals])

    def _spent_device_seconds(self) -> float:
        """Device time used since the last call (a replaced actor's time
        restarts from zero, so a step with a restart can count less)."""
        cpu_now = self._device_seconds()
        spent = max(0.0, cpu_now - self._cpu_last)
        self._cpu_last = cpu_now
        return spent

    def _account(self, rollout: RolloutBatch, batch, dropped: int = 0) -> dict:
        spent = self._spent_device_seconds()
        gen_tokens = sum(len(s.token_ids) for s in rollout.samples) + dropped
        train_tokens = int(batch.lengths_b.sum()) if batch is not None else 0
        gen_flops, train_flops = step_flops(rollout.groups, batch.lengths_b.tolist() if batch is not None else [],
                                            dropped, self.n_params, self.arch["layers"], self.arch["hidden"])
        self.state.ledger.add(device_seconds=spent, gen_tokens=gen_tokens, train_tokens=train_tokens,
                              gen_flops=gen_flops, train_flops=train_flops)
        self.state.ledger.add_judge(samples=len(rollout.samples), usage=self._judge_usage())
        # on CPU, _device_seconds has just polled the replicas (hub.cpu_seconds)
        restarts = self.hub.replica_restarts(poll=bool(self.n_gpus))
        self.state.faults["hub_restarts"] = self._hub_restarts0 + restarts
        return {"rollout/gen_tokens": gen_tokens, "train/tokens_trained": train_tokens, **self.state.ledger.totals()}

    def _device_seconds(self) -> float:
        """Accelerator-seconds so far: GPU-seconds (wall time x GPUs held) on
        GPU, else core-seconds used by every process of the run (driver,
        rollout workers, learner ranks, hub replicas and their children)."""
        if self.n_gpus:
            return time.perf_counter() * self.n_gpus
        # the driver counts its loop's thread only: a local Ray cluster's processes are its
        # children, and the live fit's thread (and the BLAS threads it starts) is bookkeeping
        return (self.fleet.cpu_seconds() + self.learner.cpu_seconds() + self.hub.cpu_seconds()
                + self._driver_clock.seconds())

    def _judge_usage(self) -> dict:
        """Judge compute since the last step, from the hub's `judge_usage()`
        (empty without judge kinds); a failed poll is a warning, not a crash."""
        usage = getattr(self.hub, "judge_usage", None)
        try:
            return self._judge.spent(usage()) if usage is not None else {}
        except Exception as err:  # noqa: BLE001
            log.warning("judge usage not read from the hub: %s", error_line(err))
            return {}

    def _warn_rewards(self, metrics: dict, rollout: RolloutBatch, trained: bool) -> None:
        """Failures are never a reward, and no step is skipped silently."""
        metrics["train/skipped"] = int(not trained)  # fault/skipped_steps: the running count
        self.state.faults["skipped_steps"] = self.state.faults.get("skipped_steps", 0) + (not trained)
        for line in reward_warnings(metrics, len(rollout.samples), self.recipe.monitor.mask_warn, trained):
            self.progress.warn(line)

    def _warn_truncation(self, metrics: dict) -> None:
        """ScaleRL saw truncation rates of 10-15% precede instability."""
        rate, limit = metrics.get("rollout/truncation_rate"), self.recipe.monitor.truncation_warn
        above = rate is not None and limit is not None and rate > limit
        warned, self._truncation_above = getattr(self, "_truncation_above", False), above
        if above and not warned:  # once per crossing, not every step
            self.progress.warn(f"warning: step {metrics['step']}: {rate:.0%} of responses were truncated at "
                               f"rollout.max_new_tokens (above monitor.truncation_warn={limit:.0%}; "
                               "ScaleRL saw 10-15% precede instability)")

    def _log(self, metrics: dict) -> None:
        if self._pending is None:
            self._write(metrics, progress=True)
        else:  # written when the evaluation in flight lands, in order
            self._pending.rows.append((time.perf_counter(), metrics))
            self.progress.update(metrics)

    def _write(self, metrics: dict, progress: bool) -> None:
        if self.fitter is not None:
            metrics.update(self.fitter.latest())
        self.metrics_log.write(metrics)
        if progress and metrics["step"] > 0:
            self.progress.update(metrics)
        elif "eval/pass_rate" in metrics:
            self.progress.last_pass = metrics["eval/pass_rate"]
        if "eval/pass_rate" in metrics:
            self._write_report()
            self.progress.note(f"step {metrics['step']}: eval pass rate {metrics['eval/pass_rate']:.3f}"
                               f" (pass@{self.recipe.eval.k} {metrics['eval/pass_at_k']:.3f})")

    def _write_report(self) -> None:
        """RUN_DIR/report.html, rebuilt after each evaluation (docs/report.md);
        a report that fails never stops training."""
        self._credit_training_time()
        try:
            from rl.report import write_report
            write_report([self.run_dir], self.run_dir / "report.html")
        except Exception as err:  # noqa: BLE001
            log.warning("report.html not written: %s", error_line(err))
        self._spent_device_seconds()  # nor is writing the report

    def _checkpoint(self, eval_score: Optional[float], background: bool) -> None:
        def state() -> str:  # the time since the step's accounting (evaluation, shards) belongs to the saved ledger
            self._credit_training_time()
            return json.dumps(self.state.state_dict())

        self.writer.write(self.state.step, eval_score, state, background)

    def _summary(self) -> dict:
        evals = self.state.evals
        out = {"steps": self.state.step, "pass_rate_start": evals[0]["y"] if evals else None,
               "pass_rate_end": evals[-1]["y"] if evals else None, "run_dir": str(self.run_dir),
               **self.state.fault_metrics()}
        if self.fitter is not None:
            self.fitter.close()
            out.update(self.fitter.latest())
        (self.run_dir / "summary.json").write_text(json.dumps(out, indent=2))
        return out

    def _finished_summary(self) -> Optional[dict]:
        path = self.run_dir / "summary.json"
        if not path.is_file():
            return None
        summary = json.loads(path.read_text())
        return summary if summary.get("steps", 0) >= self.recipe.run.steps else None

    def _stopped_by(self, err: Exception) -> RunStopped:
        """The one line a fault the run cannot recover from ends it with."""
        return RunStopped(f"{err} at step {self.state.step + 1}; the run stopped. {self._resume_hint()}")

    def _resume_hint(self) -> str:
        last = CheckpointStore(self.run_dir, checksums=self.recipe.run.checkpoint_checksums,
                               warn=lambda m: None).latest()
        where = f"from the checkpoint of step {last.step}" if last else "from the start (no checkpoint yet)"
        return f"`asymptote resume {self.run_dir}` continues {where}"

    # ---- start and stop -------------------------------------------------------
    def _start(self) -> None:
        r = self.recipe
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(to_yaml(r))
        (self.run_dir / "summary.json").unlink(missing_ok=True)  # a finished run given more steps
        self.model_path = str(resolve_base(r.model.base))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.pad_id = self.tokenizer.pad_token_id or 0
        cfg = json.loads((Path(self.model_path) / "config.json").read_text())
        self.arch = {"layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"]}
        train_rows, self.val_prompts = load_splits(r.data)
        self.state = RunState(sampler=PromptSampler(train_rows, seed=r.run.seed, cfg=r.data), ledger=ComputeLedger())
        self.ckpts = CheckpointStore(self.run_dir, keep=r.run.keep_checkpoints, checksums=r.run.checkpoint_checksums,
                                     warn=lambda m: print(f"asymptote: {m}", flush=True))

        plan = plan_resources(r)
        self.n_gpus = plan.total("GPU")
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, namespace=r.cluster.namespace, log_to_driver=False)
            else:
                ray.init(num_cpus=r.cluster.num_cpus or local_cluster_cpus(plan), namespace=r.cluster.namespace,
                         include_dashboard=False, log_to_driver=False, configure_logging=False)
        self._catch_signals()
        self.pg = place(plan)  # checked against the cluster's nodes first (rl/placement.py)
        self.hub = start_hub(r.rewards)
        self.learner = LearnerGroup(r.learner, r.algo, self.model_path, r.rollout.temperature, r.run.seed,
                                    placement_group=self.pg, first_bundle=r.rollout.workers,
                                    deterministic=r.run.deterministic, fp32_lm_head=r.model.fp32_lm_head)
        self.n_params = self.learner.n_params
        self.weight_bytes = sum(s.nbytes for s in ray.get(self.learner.actors[0].weight_specs.remote()))
        self.fleet = Fleet(r, self.model_path, self.hub, self.pg, self.learner, resolve_backend(r.learner.backend),
                           on_restart=self._count_rollout_restart)
        self._resume()
        self._hub_restarts0 = self.state.faults["hub_restarts"]
        self.fitter = LiveFitter(self.run_dir, r.monitor) if r.monitor.enabled else None
        self._refit()
        self.metrics_log = MetricsLog(self.run_dir, mode=r.run.wandb_mode, project=r.run.wandb_project,
                                      name=r.run.name, config=r.model_dump(mode="json"))
        self.progress = ProgressLine(r.run.steps, start=self.state.step, enabled=r.run.progress)
        self.writer = CheckpointWriter(self.ckpts, self.learner, self.state.faults, self.progress.warn)
        self._judge = JudgeMeter()  # the hub just started: its judge counters are at 0
        self._driver_clock = ThreadClock()
        self.utilisation = UtilisationProbe(self.learner.actors, self.fleet)
        self.evaluator = Evaluator(r, self.fleet, self.hub, lambda text: render_prompt(self.tokenizer, text),
                                   self.val_prompts, rollout_gpus=plan.roles[0].count * plan.roles[0].gpus)
        self._pending = None  # an interleaved evaluation in flight (rl.evaluation)
        self._cpu_last = self._device_seconds()

    def _resume(self) -> None:
        """Continue from the newest valid checkpoint, if any: learner, run
        state, engines at the checkpoint's weights, and metrics.jsonl rolled
        back to its step (rows logged after it are dropped, then re-logged)."""
        last = self.ckpts.latest()
        logged = (self.run_dir / "metrics.jsonl").is_file() and (self.run_dir / "metrics.jsonl").stat().st_size > 0
        kept = MetricsLog.roll_back(self.run_dir, last.step if last else None)
        MetricsLog.roll_back(self.run_dir, last.step if last else None, name="evals.jsonl")
        if last is None and logged:
            print(f"asymptote: no valid checkpoint in {self.run_dir}: starting over from step 0", flush=True)
        if last is not None:
            self.state.load_state_dict(json.loads(last.run_state.read_text()))
            version = self.learner.load_checkpoint(str(last.learner))
            self.fleet.sync(version=version, skipped=False)
        if last is not None or self._restarting:
            kind = "learner_restart" if self._restarting else "resume"
            MetricsLog.event(self.run_dir, kind, step=last.step if last else 0, rows_kept=kept,
                             checkpoint=last.path.name if last else None)
            print(f"asymptote: {kind.replace('_', ' ')} of {self.run_dir} from step {last.step if last else 0}; "
                  f"metrics.jsonl rolled back to {kept} rows", flush=True)
        self._restarting = False
        for key, kind in (("resumes", "resume"), ("learner_restarts", "learner_restart")):
            self.state.faults[key] = MetricsLog.count_events(self.run_dir, kind)

    def _count_rollout_restart(self, worker: int) -> None:
        self.state.faults["rollout_restarts"] += 1

    def _catch_signals(self) -> None:
        """SIGINT/SIGTERM: finish the step, checkpoint, stop. A second one
        interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._old_handlers = {}

        def handler(signum, frame):
            if self._signal is not None:
                signal.signal(signum, signal.SIG_DFL)
                raise KeyboardInterrupt
            self._signal = signum
            print(f"\nasymptote: {signal.Signals(signum).name}: stopping after this step with a checkpoint "
                  "(again to stop now)", flush=True)

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def _stop(self) -> None:
        for sig, old in getattr(self, "_old_handlers", {}).items():
            signal.signal(sig, old)
        self._old_handlers = {}
        for name in ("progress", "metrics_log"):
            obj = getattr(self, name, None)
            if obj is not None:
                obj.close()
            setattr(self, name, None)
        if getattr(self, "fleet", None) is not None:
            self.fleet.stop()
            self.fleet = None
        if getattr(self, "learner", None) is not None:
            self.learner.shutdown()
            self.learner = None
        if getattr(self, "hub", None) is not None:
            self.hub.shutdown()
            self.hub = None
        if getattr(self, "pg", None) is not None:
            remove_placement_group(self.pg)
            self.pg = None

"""Everything one start of a run holds, built in one place (`open_run`) and
released in one (`RunContext.close`), so the controller's class is the loop.

`open_run` writes the run folder's config, loads the base model's tokenizer
and the data, starts Ray if it is not up, places the actors (rl.placement),
starts the reward hub, the learner ranks and the rollout fleet, resumes from
the newest valid checkpoint (docs/resume.md), and opens the logs, the
checkpoint writer, the compute account and the evaluator. Each resource is
registered for release as soon as it exists; a start that fails releases
what it had built before the error leaves `open_run`. A run that restarts
after a learner failure closes its context and opens a new one.
"""
from __future__ import annotations

import functools
import json
import signal
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import ray
from ray.util.placement_group import remove_placement_group
from transformers import AutoTokenizer

from rewards.hub import start_hub
from rewards.judge.pool import default_judge_model
from rl.base.build import resolve_base
from rl.base.judge_build import judge_path
from rl.checkpoint import CheckpointStore
from rl.checkpoint_writer import CheckpointWriter
from rl.compute_account import ComputeAccount
from rl.data.datasets import check_system_prompt, load_splits, render_prompt
from rl.data.sampler import PromptSampler
from rl.evaluation import Evaluator, refit
from rl.fleet import Fleet
from rl.learner.dist import resolve_backend
from rl.learner.group import LearnerGroup
from rl.metrics_log import MetricsLog
from rl.monitor.ledger import ComputeLedger
from rl.monitor.live import LiveFitter
from rl.monitor.utilisation import UtilisationProbe
from rl.placement import local_cluster_cpus, place, plan_resources
from rl.progress import ProgressLine
from rl.recipe import Recipe, to_yaml
from rl.run_state import RunState
from rl.step_log import StepLog
from rollout.jobs import check_env


class StopSignals:
    """SIGINT/SIGTERM: finish the step, checkpoint, stop. A second one
    interrupts at once. `received` outlives a restart."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._old: dict = {}

    def catch(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            if self.received is not None:
                signal.signal(signum, signal.SIG_DFL)
                raise KeyboardInterrupt
            self.received = signum
            print(f"\nasymptote: {signal.Signals(signum).name}: stopping after this step with a checkpoint "
                  "(again to stop now)", flush=True)

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, handler)

    def release(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


@dataclass
class RunContext:
    render: Callable[[str], list[int]]  # a prompt's text to token ids, with the tokenizer's chat template
    pad_id: int
    state: RunState
    hub: Any  # rewards.hub.RewardHub
    learner: LearnerGroup
    weight_bytes: int  # one copy of the weights, as sent to the engines
    fleet: Fleet
    fitter: Optional[LiveFitter]
    progress: ProgressLine
    writer: CheckpointWriter
    utilisation: UtilisationProbe
    account: ComputeAccount
    log: StepLog
    evaluator: Evaluator
    _stack: ExitStack

    def close(self) -> None:
        """Release in reverse order of setup: logs, fleet, learner, hub, placement group."""
        self._stack.close()


def open_run(recipe: Recipe, run_dir: Path, address: Optional[str], signals: StopSignals,
             restarting: bool = False) -> RunContext:
    """Start a run (or its automatic restart after a learner failure, `restarting`)."""
    stack = ExitStack()  # each resource's release, pushed as it is built
    try:
        return _open(recipe, Path(run_dir), address, signals, restarting, stack)
    except BaseException:
        stack.close()  # what was built before the error
        raise


def _open(r: Recipe, run_dir: Path, address, signals: StopSignals, restarting: bool, stack: ExitStack) -> RunContext:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(r))
    (run_dir / "summary.json").unlink(missing_ok=True)  # a finished run given more steps
    model_path = str(resolve_base(r.model.base))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    check_system_prompt(tokenizer, r.data.system_prompt)
    check_env(tokenizer, r.rollout.env)
    cfg = json.loads((Path(model_path) / "config.json").read_text())
    arch = {"layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"]}
    train_rows, val_prompts = load_splits(r.data)
    state = RunState(sampler=PromptSampler(train_rows, seed=r.run.seed, cfg=r.data), ledger=ComputeLedger())
    ckpts = CheckpointStore(run_dir, keep=r.run.keep_checkpoints, checksums=r.run.checkpoint_checksums,
                            warn=lambda m: print(f"asymptote: {m}", flush=True))

    plan = plan_resources(r)
    _connect(r, address, plan)
    signals.catch()  # after ray.init, which sets a SIGTERM handler of its own
    pg = place(plan)  # checked against the cluster's nodes first (rl/placement.py)
    stack.callback(remove_placement_group, pg)
    hub = start_hub(r.rewards, judge_model=default_judge_model(r.rewards, judge_path))  # the judge's folder, built here if needed
    stack.callback(hub.shutdown)
    learner = LearnerGroup(r.learner, r.algo, model_path, r.rollout.temperature, r.run.seed,
                           placement_group=pg, first_bundle=r.rollout.workers,
                           deterministic=r.run.deterministic, fp32_lm_head=r.model.fp32_lm_head)
    stack.callback(learner.shutdown)

    def count_rollout_restart(worker: int) -> None:
        state.faults["rollout_restarts"] += 1

    # the engines start while the learner ranks load (LearnerGroup does not wait for them)
    fleet = Fleet(r, model_path, hub, pg, learner, resolve_backend(r.learner.backend),
                  on_restart=count_rollout_restart)
    stack.callback(fleet.stop)
    weight_bytes = sum(s.nbytes for s in ray.get(learner.actors[0].weight_specs.remote()))
    _resume(run_dir, ckpts, state, learner, fleet, restarting)
    fitter = LiveFitter(run_dir, r.monitor) if r.monitor.enabled else None
    refit(fitter, state.evals, r.monitor.x_axis)
    metrics_log = MetricsLog(run_dir, mode=r.run.wandb_mode, project=r.run.wandb_project,
                             name=r.run.name, config=r.model_dump(mode="json"))
    stack.callback(metrics_log.close)
    progress = ProgressLine(r.run.steps, start=state.step, enabled=r.run.progress)
    stack.callback(progress.close)
    writer = CheckpointWriter(ckpts, learner, state.faults, progress.warn)
    utilisation = UtilisationProbe(learner.actors, fleet)
    account = ComputeAccount(state.ledger, fleet, learner, hub, n_gpus=plan.total("GPU"),
                             rollout_gpus=plan.roles[0].count * plan.roles[0].gpus,
                             n_params=learner.n_params, arch=arch, hub_restarts0=state.faults["hub_restarts"])
    step_log = StepLog(run_dir, metrics_log, progress, fitter, account, k=r.eval.k)
    render = functools.partial(render_prompt, tokenizer, system_prompt=r.data.system_prompt)
    evaluator = Evaluator(r, fleet, render, val_prompts, state=state, account=account, log=step_log,
                          fitter=fitter, run_dir=run_dir)
    return RunContext(render, tokenizer.pad_token_id or 0, state, hub, learner, weight_bytes, fleet, fitter,
                      progress, writer, utilisation, account, step_log, evaluator, _stack=stack)


def _connect(r: Recipe, address: Optional[str], plan) -> None:
    """Join the cluster at `address`, or start an embedded one sized to the plan."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, namespace=r.cluster.namespace, log_to_driver=False)
    else:
        ray.init(num_cpus=r.cluster.num_cpus or local_cluster_cpus(plan), namespace=r.cluster.namespace,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)


def _resume(run_dir: Path, ckpts: CheckpointStore, state: RunState, learner, fleet, restarting: bool) -> None:
    """Continue from the newest valid checkpoint, if any: learner, run
    state, engines at the checkpoint's weights, and metrics.jsonl rolled
    back to its step (rows logged after it are dropped, then re-logged)."""
    last = ckpts.latest()
    logged = (run_dir / "metrics.jsonl").is_file() and (run_dir / "metrics.jsonl").stat().st_size > 0
    kept = MetricsLog.roll_back(run_dir, last.step if last else None)
    MetricsLog.roll_back(run_dir, last.step if last else None, name="evals.jsonl")
    if last is None and logged:
        print(f"asymptote: no valid checkpoint in {run_dir}: starting over from step 0", flush=True)
    if last is not None:
        state.load_state_dict(json.loads(last.run_state.read_text()))
        version = learner.load_checkpoint(str(last.learner))
        fleet.sync(version=version, skipped=False)
    if last is not None or restarting:
        kind = "learner_restart" if restarting else "resume"
        MetricsLog.event(run_dir, kind, step=last.step if last else 0, rows_kept=kept,
                         checkpoint=last.path.name if last else None)
        print(f"asymptote: {kind.replace('_', ' ')} of {run_dir} from step {last.step if last else 0}; "
              f"metrics.jsonl rolled back to {kept} rows", flush=True)
    for key, kind in (("resumes", "resume"), ("learner_restarts", "learner_restart")):
        state.faults[key] = MetricsLog.count_events(run_dir, kind)

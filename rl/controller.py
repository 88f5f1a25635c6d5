"""The training loop, readable top to bottom: place actors, run the
generation -> reward -> train -> weight-sync pipeline, evaluate, log,
checkpoint.

Asynchrony is the normal case. With `max_off_policy_steps = k` the
controller keeps the rollout jobs for steps s..s+k in flight while the learner
trains step s; the job for step t enters an engine only once that engine's
weights are at least version t-k, so no sample is more than k versions old
(k = 0 is synchronous on-policy). New weights are pushed into engines between
decode steps while generations are in flight (PipelineRL).

Run state that a resume needs (step, prompt sampler, the prompts of
in-flight jobs, compute ledger, RNG seeds) lives in `RunState`, which has a
state_dict; the learner's model and optimizer go to a DCP checkpoint.
"""
from __future__ import annotations

import json
import logging
import zlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import ray
import torch
from transformers import AutoTokenizer
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rewards.hub import start_hub
from rl.algo.batch import build_train_batch
from rl.base.build import resolve_base
from rl.data.datasets import PromptSampler, load_splits, render_prompt
from rl.learner.dist import resolve_backend
from rl.learner.group import LearnerGroup
from rl.metrics_log import MetricsLog
from rl.monitor.ledger import ComputeLedger, flops_per_token
from rl.monitor.live import LiveFitter
from rl.placement import local_cluster_cpus, plan_resources
from rl.progress import ProgressLine
from rl.recipe import Recipe, to_yaml
from rollout.types import RolloutBatch
from rollout.worker import Job, RolloutWorker

log = logging.getLogger(__name__)

ENGINE_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_ALLOW_INSECURE_SERIALIZATION": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass
class RunState:
    """Everything besides model/optimizer that a resume restores."""

    step: int = 0
    sampler: Any = None
    ledger: Any = None
    pending: dict[int, list] = field(default_factory=dict)  # step -> prompts of in-flight jobs
    evals: list[dict] = field(default_factory=list)  # (step, compute, pass rate) points for the fit
    probe: Optional[dict] = None  # fixed (prompt, completion) token ids for the mismatch probe

    def state_dict(self) -> dict:
        return {"step": self.step, "sampler": self.sampler.state_dict(), "ledger": self.ledger.state_dict(),
                "pending": {str(k): v for k, v in self.pending.items()}, "evals": self.evals,
                "probe": self.probe}

    def load_state_dict(self, d: dict) -> None:
        self.step = d["step"]
        self.sampler.load_state_dict(d["sampler"])
        self.ledger.load_state_dict(d["ledger"])
        self.pending = {int(k): v for k, v in d["pending"].items()}
        self.evals = list(d["evals"])
        self.probe = d.get("probe")


class Controller:
    def __init__(self, recipe: Recipe, run_dir: Path, address: Optional[str] = None):
        self.recipe, self.run_dir = recipe, Path(run_dir)
        self.address = address or recipe.cluster.address

    # ---- the whole run ------------------------------------------------------
    def run(self) -> dict:
        done = self._finished_summary()
        if done is not None:  # relaunching a complete run only reports it
            return done
        self._start()
        try:
            return self._loop()
        finally:
            self._stop()

    def _loop(self) -> dict:
        r, st = self.recipe, self.state
        k, total = r.pipeline.max_off_policy_steps, r.run.steps
        if st.step == 0 and not st.evals:
            self._log(self._evaluate(step=0) | {"step": 0})
        inflight: dict[int, list] = {}
        while st.step < total:
            step = st.step
            t0 = time.perf_counter()
            self._fill(inflight, step, k, total)
            rollout = self._collect(inflight.pop(step))
            t_gen = time.perf_counter()
            batch = build_train_batch(rollout.groups, r.algo, self.pad_id)
            train = self.learner.train_step(batch)
            t_train = time.perf_counter()
            self._sync_weights(version=step + 1, skipped=batch is None)
            t_sync = time.perf_counter()
            probe = self._probe_mismatch()
            st.pending.pop(step, None)
            st.step = step + 1
            metrics = {"step": st.step, "policy_version": st.step, **train,
                       **rollout_metrics(rollout, step, k),
                       "time/wait_rollout": t_gen - t0, "time/train": t_train - t_gen,
                       "time/weight_sync": t_sync - t_train, **probe}
            metrics.update(self._account(rollout, batch))
            if st.step % r.eval.every == 0 or st.step == total:
                metrics.update(self._evaluate(step=st.step))
            metrics["time/step"] = time.perf_counter() - t0
            self._log(metrics)
            if (r.run.checkpoint_every and st.step % r.run.checkpoint_every == 0) or st.step == total:
                self._checkpoint()
        return self._summary()

    # ---- pipeline -------------------------------------------------------------
    def _fill(self, inflight: dict, step: int, k: int, total: int) -> None:
        """Keep rollout jobs for steps step..step+k in flight."""
        for s in range(step, min(step + k + 1, total)):
            if s in inflight:
                continue
            prompts = self.state.pending.get(s)
            if prompts is None:
                prompts = self.state.sampler.next_batch(self.recipe.rollout.prompts_per_step)
                self.state.pending[s] = prompts
            ro = self.recipe.rollout
            inflight[s] = self._submit(f"train/{s}", s, prompts, ro.samples_per_prompt, ro.temperature,
                                       min_version=max(0, s - k), priority=0)

    def _submit(self, job_id: str, step: int, prompts: list[dict], n: int, temperature: float,
                min_version: int, priority: int) -> list:
        refs = []
        shards = _split(prompts, len(self.workers))
        for i, (worker, rows) in enumerate(zip(self.workers, shards)):
            if not rows:
                continue
            job = Job(job_id=f"{job_id}/{i}", step=step, prompts=rows,
                      prompt_ids=[render_prompt(self.tokenizer, row["prompt"]) for row in rows],
                      n=n, temperature=temperature, max_tokens=self.recipe.rollout.max_new_tokens,
                      min_version=min_version, priority=priority,
                      seed=zlib.crc32(f"{self.recipe.run.seed}/{job_id}/{i}".encode()) << 20)
            refs.append(worker.generate.remote(job))
        return refs

    def _collect(self, refs: list) -> RolloutBatch:
        parts = ray.get(refs)
        return RolloutBatch(step=parts[0].step, groups=[g for p in parts for g in p.groups],
                            gen_seconds=max(p.gen_seconds for p in parts))

    def _sync_weights(self, version: int, skipped: bool) -> None:
        if skipped:
            ray.get([w.set_version.remote(version) for w in self.workers])
            return
        transport = self.recipe.pipeline.weight_transport
        refs = self.learner.push_weights_refs(transport)
        if transport == "safetensors":
            ray.get([w.receive_weights.remote(refs[0], version) for w in self.workers] + refs[1:])
        else:
            ray.get(refs + [w.receive_broadcast.remote(version) for w in self.workers])

    def _probe_mismatch(self) -> dict:
        """Score one fixed batch with every engine and with the learner right
        after a weight sync: the train-inference mismatch, every step."""
        probe = self.state.probe
        if not probe:
            return {}
        prompts, completions = probe["prompts"], probe["completions"]
        temperature = self.recipe.rollout.temperature
        refs = [w.score.remote(prompts, completions, temperature) for w in self.workers]
        seqs = [p + c for p, c in zip(prompts, completions)]
        ids = torch.full((len(seqs), max(map(len, seqs))), self.pad_id, dtype=torch.long)
        for i, seq in enumerate(seqs):
            ids[i, :len(seq)] = torch.tensor(seq)
        learner_lp = self.learner.score_tokens(ids)
        worst, total, count = 0.0, 0.0, 0
        for _, engine_lp in ray.get(refs):
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
        ev = self.recipe.eval
        rows = self.val_prompts[: ev.prompts] if ev.prompts else self.val_prompts
        t0 = time.perf_counter()
        result = self._collect(self._submit(f"eval/{step}", step, rows, ev.k, ev.temperature,
                                            min_version=step, priority=1))
        self.eval_gen_tokens += sum(len(s.token_ids) for s in result.samples)
        if self.state.probe is None:
            self._set_probe(result)
        out = eval_metrics(result)
        out["time/eval"] = time.perf_counter() - t0
        point = {"step": step, "y": out["eval/pass_rate"], **self.state.ledger.totals()}
        self.state.evals.append(point)
        if self.fitter is not None:
            axis = f"compute/{self.recipe.monitor.x_axis}"
            self.fitter.submit([{"step": p["step"], "x": p.get(axis, 0.0), "y": p["y"]} for p in self.state.evals])
        return out

    def _account(self, rollout: RolloutBatch, batch) -> dict:
        cpu_now = self._device_seconds()
        spent = max(0.0, cpu_now - self._cpu_last)
        self._cpu_last = cpu_now
        gen_tokens = sum(len(s.token_ids) for s in rollout.samples) + self.eval_gen_tokens
        self.eval_gen_tokens = 0
        train_tokens = int(batch.lengths_b.sum()) if batch is not None else 0
        ctx = self.recipe.rollout.max_new_tokens + 16
        arch = self.arch
        self.state.ledger.add(
            device_seconds=spent, gen_tokens=gen_tokens, train_tokens=train_tokens,
            gen_flops=gen_tokens * flops_per_token(self.n_params, arch["layers"], arch["hidden"], ctx // 2, train=False),
            train_flops=train_tokens * flops_per_token(self.n_params, arch["layers"], arch["hidden"], ctx, train=True),
        )
        return {"rollout/gen_tokens": gen_tokens, "train/tokens_trained": train_tokens, **self.state.ledger.totals()}

    def _device_seconds(self) -> float:
        """Accelerator-seconds so far: GPU-seconds (wall time x GPUs held) on
        GPU, else core-seconds used by every process of the run (driver,
        rollout workers, learner ranks, hub replicas and their children)."""
        if self.n_gpus:
            return time.perf_counter() * self.n_gpus
        refs = [w.cpu_seconds.remote() for w in self.workers]
        # the driver counts itself only: a local Ray cluster's processes are its children
        return sum(ray.get(refs)) + self.learner.cpu_seconds() + self.hub.cpu_seconds() + time.process_time()

    def _log(self, metrics: dict) -> None:
        if self.fitter is not None:
            metrics.update(self.fitter.latest())
        self.metrics_log.write(metrics)
        if metrics["step"] > 0:
            self.progress.update(metrics)
        if "eval/pass_rate" in metrics:
            self.progress.note(f"step {metrics['step']}: eval pass rate {metrics['eval/pass_rate']:.3f}"
                               f" (pass@{self.recipe.eval.k} {metrics['eval/pass_at_k']:.3f})")

    def _checkpoint(self) -> None:
        path = self.run_dir / "checkpoints" / f"step_{self.state.step:06d}"
        path.mkdir(parents=True, exist_ok=True)
        self.learner.save_checkpoint(str(path / "learner"))
        (path / "run_state.json").write_text(json.dumps(self.state.state_dict()))
        old = sorted((self.run_dir / "checkpoints").glob("step_*"))[: -self.recipe.run.keep_checkpoints]
        for p in old:
            shutil.rmtree(p, ignore_errors=True)

    def _summary(self) -> dict:
        evals = self.state.evals
        out = {"steps": self.state.step, "pass_rate_start": evals[0]["y"] if evals else None,
               "pass_rate_end": evals[-1]["y"] if evals else None, "run_dir": str(self.run_dir)}
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

    # ---- start and stop -------------------------------------------------------
    def _start(self) -> None:
        r = self.recipe
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(to_yaml(r))
        self.model_path = str(resolve_base(r.model.base))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.pad_id = self.tokenizer.pad_token_id or 0
        cfg = json.loads((Path(self.model_path) / "config.json").read_text())
        self.arch = {"layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"]}
        train_rows, self.val_prompts = load_splits(r.data)
        self.state = RunState(sampler=PromptSampler(train_rows, seed=r.run.seed), ledger=ComputeLedger())

        plan = plan_resources(r)
        self.n_gpus = plan.total("GPU")
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, namespace=r.cluster.namespace, log_to_driver=False)
            else:
                ray.init(num_cpus=r.cluster.num_cpus or local_cluster_cpus(plan), namespace=r.cluster.namespace,
                         include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.pg = placement_group(plan.bundles, strategy=plan.strategy)
        ray.get(self.pg.ready())
        self.hub = start_hub(r.rewards)
        env = dict(ENGINE_ENV)
        worker_cls = ray.remote(max_concurrency=32)(RolloutWorker)
        self.workers = [
            worker_cls.options(num_cpus=r.rollout.cpus_per_worker, num_gpus=r.rollout.gpus_per_worker,
                               runtime_env={"env_vars": env},
                               scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i))
            .remote(self.model_path, r.rollout.engine, self.hub, i)
            for i in range(r.rollout.workers)
        ]
        self.learner = LearnerGroup(r.learner, r.algo, self.model_path, r.rollout.temperature, r.run.seed,
                                    placement_group=self.pg, first_bundle=r.rollout.workers)
        self.n_params = self.learner.n_params
        if r.pipeline.weight_transport == "broadcast":
            self._connect_broadcast()
        ray.get([w.version.remote() for w in self.workers])  # engines are up
        self.resumed_from = self._maybe_resume()
        self.fitter = LiveFitter(self.run_dir, r.monitor) if r.monitor.enabled else None
        self.metrics_log = MetricsLog(self.run_dir, mode=r.run.wandb_mode, project=r.run.wandb_project,
                                      name=r.run.name, config=r.model_dump(mode="json"))
        self.progress = ProgressLine(r.run.steps, start=self.state.step, enabled=r.run.progress)
        self.eval_gen_tokens = 0
        self._cpu_last = self._device_seconds()

    def _connect_broadcast(self) -> None:
        backend = resolve_backend(self.recipe.learner.backend)
        host, port = ray.get(self.learner.actors[0].master_address.remote())
        world = 1 + len(self.workers)
        ray.get(self.learner.connect_weight_broadcast_refs(backend, host, port, world)
                + [w.connect_weight_broadcast.remote(backend, host, port, i + 1, world)
                   for i, w in enumerate(self.workers)])

    def _maybe_resume(self) -> Optional[str]:
        ckpts = sorted((self.run_dir / "checkpoints").glob("step_*"))
        if not ckpts:
            return None
        last = ckpts[-1]
        self.state.load_state_dict(json.loads((last / "run_state.json").read_text()))
        version = self.learner.load_checkpoint(str(last / "learner"))
        self._sync_weights(version=version, skipped=False)
        return str(last)

    def _stop(self) -> None:
        for name in ("progress", "metrics_log"):
            obj = getattr(self, name, None)
            if obj is not None:
                obj.close()
        for w in getattr(self, "workers", []):
            try:
                ray.get(w.stop.remote(), timeout=30)
            except Exception:
                pass
            ray.kill(w)
        if getattr(self, "learner", None) is not None:
            self.learner.shutdown()
        if getattr(self, "hub", None) is not None:
            self.hub.shutdown()
        if getattr(self, "pg", None) is not None:
            remove_placement_group(self.pg)


def rollout_metrics(batch: RolloutBatch, step: int, k: int) -> dict:
    samples = batch.samples
    if not samples:
        return {}
    rewards = [s.reward for s in samples]
    lengths = [len(s.token_ids) for s in samples]
    correct = [bool(s.correct) for s in samples]
    stale = [step - s.min_version for s in samples]
    kept = sum(1 for g in batch.groups if len({s.reward for s in g.samples}) > 1)
    return {
        "rollout/reward_mean": sum(rewards) / len(rewards),
        "rollout/pass_rate": sum(correct) / len(correct),
        "rollout/length_mean": sum(lengths) / len(lengths),
        "rollout/length_max": max(lengths),
        "rollout/truncation_rate": sum(s.finish_reason == "length" for s in samples) / len(samples),
        "rollout/groups_kept": kept / max(1, len(batch.groups)),
        "rollout/samples": len(samples),
        "pipeline/staleness_max": max(stale),
        "pipeline/staleness_mean": sum(stale) / len(stale),
        "pipeline/max_off_policy_steps": k,
        "time/generate": batch.gen_seconds,
    }


def eval_metrics(batch: RolloutBatch) -> dict:
    samples = batch.samples
    correct = [bool(s.correct) for s in samples]
    per_prompt = [any(bool(s.correct) for s in g.samples) for g in batch.groups]
    return {
        "eval/pass_rate": sum(correct) / max(1, len(correct)),
        "eval/pass_at_k": sum(per_prompt) / max(1, len(per_prompt)),
        "eval/length_mean": sum(len(s.token_ids) for s in samples) / max(1, len(samples)),
        "eval/truncation_rate": sum(s.finish_reason == "length" for s in samples) / max(1, len(samples)),
        "eval/prompts": len(batch.groups),
    }


def _split(rows: list, n: int) -> list[list]:
    return [rows[i::n] for i in range(n)]

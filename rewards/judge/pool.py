"""The judge engines behind the hub: start them in their own placement
groups, spread requests over them, read their usage for the ledger.

`JudgePool` is picklable (actor handles plus what was learnt at start), so
each hub replica holds a copy and sends its requests straight to the engines:
requests from every replica meet in the engines' continuous batches, not in a
queue of ours. Requests are dealt round-robin from a random start, one Ray call
per engine per batch.
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable, Optional

import ray

from core.errors import UserError
from rewards.actors import close_and_kill
from rewards.judge.config import JudgeConfig

USAGE_KEYS = ("requests", "completed", "timeouts", "errors", "overflows", "retries", "prompt_tokens",
              "generated_tokens")


class JudgePool:
    def __init__(self, cfg: JudgeConfig, engines: list, info: dict, groups: list):
        self.cfg = cfg
        self.engines = engines
        self.info = info
        self.groups = groups  # placement groups, one per engine
        self._seen: list[tuple[Optional[str], float]] = [(None, 0.0)] * len(engines)
        self._dead_seconds = 0.0

    def submit(self, requests: list[dict]) -> list[tuple[list[int], Any]]:
        """Send the requests; returns (request positions, ObjectRef) per engine call."""
        if not requests:
            return []
        n = len(self.engines)
        start = random.randrange(n)
        parts: list[list[int]] = [[] for _ in range(n)]
        for i in range(len(requests)):
            parts[(start + i) % n].append(i)
        return [(pos, self.engines[e].generate.remote([requests[i] for i in pos]))
                for e, pos in enumerate(parts) if pos]

    def collect(self, pending: list[tuple[list[int], Any]], n_requests: int) -> list[dict]:
        """The engines' answers in request order; a call whose engine died (or
        never answered well past every deadline) fails each of its requests."""
        outs: list[dict] = [{"error": "judge request was not answered", "timeout": False}] * n_requests
        for pos, ref in pending:
            try:
                got = ray.get(ref, timeout=self.cfg.timeout_s + 60.0)
            except ray.exceptions.GetTimeoutError:
                got = [{"error": "judge engine did not answer", "timeout": True}] * len(pos)
            except ray.exceptions.RayError as err:
                got = [{"error": f"judge engine failed: {type(err).__name__}", "timeout": False}] * len(pos)
            for i, out in zip(pos, got):
                outs[i] = out
        return outs

    def usage(self) -> dict[str, Any]:
        """Judge work since start, summed over engines: the compute ledger's
        judge columns. `judge_core_seconds` never decreases (a restarted
        engine's last reading is kept); on GPU the ledger should bill
        `judge_gpus` x wall time instead, as it does for the other roles."""
        snaps = ray.get([e.usage.remote() for e in self.engines])
        for i, s in enumerate(snaps):
            worker, seconds = self._seen[i]
            if worker is not None and s["worker"] != worker:
                self._dead_seconds += seconds
            self._seen[i] = (s["worker"], s["core_seconds"])
        out: dict[str, Any] = {f"judge_{k}": sum(s[k] for s in snaps) for k in USAGE_KEYS}
        out["judge_core_seconds"] = self._dead_seconds + sum(sec for _, sec in self._seen)
        out["judge_busy_s"] = sum(s["busy_s"] for s in snaps)
        out["judgements"] = out["judge_completed"]
        out["judge_replicas"] = len(self.engines)
        out["judge_gpus"] = self.cfg.gpus_per_replica * len(self.engines)
        return out

    def shutdown(self) -> None:
        from ray.util.placement_group import remove_placement_group

        close_and_kill(self.engines)
        for pg in self.groups:
            remove_placement_group(pg)
        self.engines, self.groups = [], []


def default_judge_model(cfg, default_judge: Optional[Callable[[], object]]) -> Optional[str]:
    """The judge folder a caller passes down to a hub serving `cfg` (a
    rewards.RewardsConfig): None when `cfg` starts no judge, names its own
    `rewards.judge.model` or no default resolver was given; else what
    `default_judge()` returns (the learner side's tiny judge, built there
    on first use)."""
    if cfg.judge is None or cfg.judge.model is not None or default_judge is None:
        return None
    return str(default_judge())


def resolve_model(cfg: JudgeConfig, judge_model: Optional[str] = None) -> str:
    """The judge's folder: `cfg.model`, else `judge_model` (the default the
    caller resolved: the learner side builds the project's tiny judge; the
    hub never trains one)."""
    if cfg.model is not None:
        return cfg.model
    if judge_model is not None:
        return judge_model
    raise UserError("rewards.judge.model is not set: name the judge's model folder")


def start_judges(cfg: JudgeConfig, judge_model: Optional[str] = None, ready_timeout_s: float = 600.0) -> JudgePool:
    """Start `cfg.replicas` engines, each in a placement group of one bundle
    ({CPU, GPU}) that also holds whatever vLLM starts inside it; they serve
    `resolve_model(cfg, judge_model)`."""
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from rewards.judge.engine import JudgeEngine

    model = resolve_model(cfg, judge_model)
    bundle = {"CPU": cfg.cpus_per_replica}
    if cfg.gpus_per_replica:
        bundle["GPU"] = cfg.gpus_per_replica
    groups = [placement_group([bundle], strategy="PACK") for _ in range(cfg.replicas)]
    pool = JudgePool(cfg, [], {}, groups)
    try:
        t0 = time.monotonic()
        for pg in groups:
            if not pg.wait(max(1.0, ready_timeout_s - (time.monotonic() - t0))):
                raise UserError(f"rewards.judge: cannot place {cfg.replicas} judge engine(s) of {bundle} "
                                "on this cluster (lower judge.replicas or cpus/gpus_per_replica)")
        cfg_json = cfg.model_dump_json()
        pool.engines = [JudgeEngine.options(
            num_cpus=cfg.cpus_per_replica, num_gpus=cfg.gpus_per_replica, max_restarts=2, max_task_retries=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0, placement_group_capture_child_tasks=True),
        ).remote(model, cfg_json) for pg in groups]
        pool._seen = [(None, 0.0)] * len(pool.engines)
        pool.info = ray.get([e.info.remote() for e in pool.engines], timeout=ready_timeout_s)[0]
    except BaseException:
        pool.shutdown()
        raise
    return pool

"""The reward hub: N Ray actor replicas behind one picklable handle.

Why a pool of actors and not Ray Serve: callers already send whole groups
(the batching unit, because the length terms need the group), so Serve's
request-level `@serve.batch` buys nothing; Serve adds a controller and an
HTTP proxy (two more always-on processes on a 2-core box) and its proxy
knows no tokens, while the hub needs its own authenticated HTTP front
(rewards.http). Plain actor handles pickle into rollout workers, and
`score_groups_async` returns one ObjectRef the learner can `ray.get` (or
`await`) later, so scoring overlaps generation.

Each replica owns a rewards.scorer.Scorer: a math worker process it kills on
a per-item timeout (with a warm spare), a sandboxed code runner, an LRU cache
keyed by content hash, and metrics that `RewardHub.metrics()` merges.

A replica whose process dies is replaced by Ray's own actor fault tolerance
(`max_restarts`, `max_task_retries`), not by a supervisor of ours: Ray
restarts the process and re-runs the calls that were pending on it, so a
caller holding an ObjectRef just gets its result, a few seconds late. The
handle notices a restart when a replica answers from a new worker process
(`replica_restarts`, `cpu_seconds`); the dead replica's math workers die
with it (PR_SET_PDEATHSIG in rewards.worker), even in the middle of an item.

With `rewards.judge` set, `start_hub` first starts the judge engines
(rewards.judge.pool, each in its own placement group) and hands every replica
their handles: replicas send judge requests straight to the engines, whose
continuous batching mixes the requests of all replicas. `metrics()["judge"]`
and `judge_usage()` report the engines' work for the compute ledger.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

import ray

from rewards.actors import close_and_kill
from rewards.config import RewardsConfig
from rewards.custom_call import shipped_code
from rewards.types import RewardResult


@ray.remote(max_concurrency=4)
class RewardReplica:
    """One hub replica. Scoring calls are serialised by the Scorer's lock;
    `metrics` and `ping` answer while a batch is being scored."""

    def __init__(self, cfg_json: str, judges=None):
        from rewards.scorer import Scorer

        self.scorer = Scorer(RewardsConfig.model_validate_json(cfg_json), judges)

    def ping(self) -> bool:
        self.scorer.warm()
        return True

    def score_groups(self, groups: list[list[dict]]) -> list[list[RewardResult]]:
        return self.scorer.score_groups(groups)

    def usage(self) -> tuple[str, float]:
        """(Ray worker id of this process, core-seconds this process and its
        math workers have used). The id changes when Ray restarts the replica;
        unlike a PID it is unique across nodes."""
        from core.clocks import process_tree_core_seconds

        return ray.get_runtime_context().get_worker_id(), process_tree_core_seconds()

    def metrics(self) -> dict[str, Any]:
        return self.scorer.metrics.snapshot()

    def close(self) -> None:
        self.scorer.close()


@ray.remote(num_cpus=0)
def _concat(*parts: list) -> list:
    return [x for part in parts for x in part]


def _split(groups: list[list[dict]], n_chunks: int) -> list[list[list[dict]]]:
    """Contiguous chunks of whole groups with about equal sample counts."""
    total = sum(len(g) for g in groups)
    target = max(1, -(-total // n_chunks))
    chunks, cur, size = [], [], 0
    for g in groups:
        if cur and size + len(g) > target:
            chunks.append(cur)
            cur, size = [], 0
        cur.append(g)
        size += len(g)
    if cur:
        chunks.append(cur)
    return chunks


class RewardHub:
    """Handle to the replicas; picklable, usable from the driver or any actor.

    Restart counting and CPU totals are bookkeeping of the copy that asks (the
    controller's, on the driver): each copy remembers which process answered
    for each replica last time and what it had used."""

    def __init__(self, cfg: RewardsConfig, replicas: list, judges=None):
        self.cfg = cfg
        self.replicas = replicas
        self.judges = judges  # rewards.judge.pool.JudgePool or None
        self._seen: list[tuple[Optional[str], float]] = [(None, 0.0)] * len(replicas)
        self._restarts = 0
        self._dead_seconds = 0.0

    def _poll(self) -> None:
        """Ask every replica which process it runs in; a new one is a restart.
        A call made while a replica restarts waits for the new process."""
        for i, (worker, seconds) in enumerate(ray.get([r.usage.remote() for r in self.replicas])):
            last_worker, last_seconds = self._seen[i]
            if last_worker is not None and worker != last_worker:
                self._restarts += 1
                self._dead_seconds += last_seconds
            self._seen[i] = (worker, seconds)

    def score_groups_async(self, groups: list[list[dict]]) -> ray.ObjectRef:
        """One ObjectRef resolving to list[list[RewardResult]], in order."""
        groups = [list(g) for g in groups]
        total = sum(len(g) for g in groups)
        n_chunks = max(min(len(self.replicas), len(groups)), -(-total // self.cfg.max_batch), 1)
        chunks = _split(groups, n_chunks)
        start = random.randrange(len(self.replicas))
        refs = [self.replicas[(start + i) % len(self.replicas)].score_groups.remote(c)
                for i, c in enumerate(chunks)]
        if len(refs) == 1:
            return refs[0]
        return _concat.remote(*refs)

    def score_groups(self, groups: list[list[dict]]) -> list[list[RewardResult]]:
        if not groups:
            return []
        return ray.get(self.score_groups_async(groups))

    def score_async(self, samples: list[dict]) -> ray.ObjectRef:
        """Flat samples, each its own group (group terms see one sample)."""
        return self.score_groups_async([[s] for s in samples])

    def score(self, samples: list[dict]) -> list[RewardResult]:
        if not samples:
            return []
        return [g[0] for g in self.score_groups([[s] for s in samples])]

    def metrics(self) -> dict[str, Any]:
        from rewards.scorer import summarise

        out = summarise(ray.get([r.metrics.remote() for r in self.replicas]))
        if self.judges is not None:
            out["judge"] = self.judge_usage()
        return out

    def judge_usage(self) -> dict[str, Any]:
        """The judge engines' work since start (rewards.judge.pool.JudgePool.usage:
        judge_core_seconds, judge_prompt_tokens, judge_generated_tokens,
        judgements, judge_timeouts, ...); {} without judges. Not part of
        `cpu_seconds`, so the ledger can keep judging in its own columns."""
        return self.judges.usage() if self.judges is not None else {}

    def replica_restarts(self, poll: bool = True) -> int:
        """Times Ray has restarted a replica since `start_hub`. Seen by polling,
        so two restarts of one replica between two polls count as one;
        `poll=False` reports what the last poll (e.g. `cpu_seconds`) saw."""
        if poll:
            self._poll()
        return self._restarts

    def cpu_seconds(self) -> float:
        """Core-seconds used by all replicas (for the compute ledger). Never
        decreases: a dead process's last reading is kept, so only what it used
        after the previous call is lost."""
        self._poll()
        return self._dead_seconds + sum(seconds for _, seconds in self._seen)

    def shutdown(self) -> None:
        close_and_kill(self.replicas)
        self.replicas = []
        if self.judges is not None:
            self.judges.shutdown()
            self.judges = None


PROJECT = Path(__file__).resolve().parent.parent


def uploaded_py_modules(paths: list[str]) -> dict:
    """A runtime_env whose py_modules are `paths`, uploaded to the cluster now.
    Ray uploads local py_modules itself only for a job's runtime_env (ray.init,
    a submitted job); an actor's must already name URIs, so this runs Ray's
    own upload step (content-addressed: the same code is uploaded once)."""
    import logging
    import tempfile

    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    with tempfile.TemporaryDirectory(prefix="asymptote-ship-") as scratch:
        return upload_py_modules_if_needed({"py_modules": list(paths)}, include_gitignore=False,
                                           scratch_dir=scratch, logger=logging.getLogger(__name__))


def start_hub(cfg: RewardsConfig, judge_model: Optional[str] = None) -> RewardHub:
    """Start `cfg.replicas` replicas (initialising Ray locally if needed) and
    wait until each has a warm math worker. `judge_model`: the judge's folder
    when `cfg.judge` names none (rewards.judge.pool.resolve_model).

    Each replica may be restarted `replica_max_restarts` times. Its calls are
    retried without a count of their own (max_task_retries=-1): a call is only
    retried after its replica died, so the restart budget already bounds the
    retries, and a call fails only once its replica is gone for good. Scoring
    is a pure function of the request, so running a call twice is harmless."""
    cfg = cfg.with_custom_checked()  # a function that cannot be used stops here, in one line
    if not ray.is_initialized():
        ray.init()
    judges = None
    if cfg.judge is not None:
        from rewards.judge.pool import start_judges

        judges = start_judges(cfg.judge, judge_model)
    cfg_json = cfg.model_dump_json()
    options = dict(num_cpus=cfg.replica_cpus, max_restarts=cfg.replica_max_restarts, max_task_retries=-1)
    ship = shipped_code(cfg.custom, PROJECT)
    if ship:  # the user's reward code travels to replicas on other nodes with Ray (runtime_env py_modules)
        options["runtime_env"] = uploaded_py_modules(ship)
    replicas = [RewardReplica.options(**options).remote(cfg_json, judges) for _ in range(cfg.replicas)]
    ray.get([r.ping.remote() for r in replicas])
    hub = RewardHub(cfg, replicas, judges)
    hub._poll()
    return hub

"""The rollout workers as one fleet, seen from the controller: submit a job
(split across workers), collect it, push weights, score the probe batch.

A worker that dies is replaced, in its own placement-group bundle, and the
fleet recovers by itself: the new engine receives the current weights (for
a collective transport the whole weight group is rebuilt, since a collective
group cannot take a new member), then every job part the dead worker held is
resubmitted to the new one. A resubmitted part carries its original seed, so
it draws the same random numbers; its samples come from the current weights,
which never breaks the staleness bound (they are newer, not older).

A death is noticed wherever a call to the worker fails: collecting a job,
pushing weights (the learner's side of a collective push then fails at
once, gloo reports the closed connection, or after `weight_sync_timeout_s`),
scoring, or reading CPU time. Each replacement is reported through `on_restart`.

A job part that raises (the engine hit an error of its own, a bug rather
than a death) is treated the same way once: its traceback is logged, the
worker is replaced and the part runs again on the new engine. If the same
part raises again the error is not transient, and the fleet raises
`RolloutFailed`, which stops the run with one line and the checkpoint to
resume from; the traceback stays in the log above it.

A worker lost with its node is replaced the same way: Ray moves the lost
node's placement-group bundles to another node when one has the resources
(the bundle's custom resources included, e.g. `rollout_node`). When none
has, the replacement cannot start; after `rollout.restart_wait_s` the fleet
raises `RolloutLost`, which the controller treats like a lost learner rank:
the run stops with one line naming the missing resources and the checkpoint
`asymptote resume` continues from.

`acks[i]` lists every weight version worker slot i confirmed (a pushed
version, or a skipped update's number): what a test reads to check that
every engine received every version.
"""
from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from core.errors import error_line
from core.gather import DEATHS, ActorDied, gather
from rl.learner.group import LearnerFailure
from rollout.types import Group, RolloutBatch
from rollout.weights import make_transport
from rollout.worker import Job, RolloutWorker

log = logging.getLogger(__name__)


def job_seed(run_seed: int, job_id: str, worker: int) -> int:
    """The seed of one worker's part of a job: fixed by the run's seed, the job
    and the worker, so a regenerated job samples the same tokens."""
    return zlib.crc32(f"{run_seed}/{job_id}/{worker}".encode()) << 20


class RolloutLost(LearnerFailure):
    """A dead rollout worker could not be replaced: no node has room for its
    bundle (its node was lost and no other node has the resources)."""

    def __init__(self, worker: int, bundle: dict, waited_s: float):
        what = ", ".join(f"{v:g} {k}" for k, v in bundle.items())
        Exception.__init__(self, f"rollout worker {worker} died and could not be restarted: no node has "
                                 f"{what} free (waited {waited_s:g} s; was its node lost?)")
        self.rank = worker


class RolloutFailed(Exception):
    """A job part raised on a rollout worker and again on its replacement."""

    def __init__(self, worker: int, cause: BaseException):
        super().__init__(f"rollout worker {worker} failed twice on the same job ({error_line(cause)})")
        self.worker, self.cause = worker, cause


ENGINE_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_ALLOW_INSECURE_SERIALIZATION": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass
class Part:
    """One worker's share of a job."""

    worker: int
    job: Job
    ref: Any = None
    failures: int = 0  # times this part raised on a worker


class Fleet:
    def __init__(self, recipe, model_path: str, hub, pg, learner, backend: str,
                 on_restart: Callable[[int], None] = lambda i: None):
        self.recipe, self.model_path, self.hub, self.pg, self.learner = recipe, model_path, hub, pg, learner
        self.backend, self.on_restart = backend, on_restart
        self.transport = make_transport(recipe.pipeline.weight_transport)
        self.version = 0  # weights every live engine holds (or is loading)
        self._parts: dict[str, Part] = {}  # job part id -> part, until collected
        self.acks: list[list[int]] = [[] for _ in range(recipe.rollout.workers)]
        self._cls = ray.remote(max_concurrency=32)(RolloutWorker)
        self.workers = [self._new_worker(i) for i in range(recipe.rollout.workers)]
        ray.get([w.version.remote() for w in self.workers])  # engines are up
        self.learner.ready()  # the ranks loaded meanwhile (LearnerGroup does not wait); the connect timeout is not theirs
        self._connect()

    # ---- jobs -------------------------------------------------------------------
    def submit(self, job_id: str, step: int, prompts: list[dict], prompt_ids: list[list[int]], n: int,
               temperature: float, min_version: int, priority: int,
               carried: Optional[list[Optional[Group]]] = None, partial: bool = True) -> list[Part]:
        """Split a job across the workers (prompt r goes to worker r % workers).
        `carried[r]`, aligned with `prompts`, is an unfinished group from an
        earlier job whose partial samples prompt r continues (None: a fresh
        prompt). `partial=False` turns the segment budget off (evaluation
        must get whole answers); forced interruption applies to every job."""
        ro = self.recipe.rollout
        if carried is not None and len(carried) != len(prompts):
            raise ValueError(f"carried has {len(carried)} entries for {len(prompts)} prompts")
        parts = []
        for i in range(len(self.workers)):
            rows = list(range(i, len(prompts), len(self.workers)))
            if not rows:
                continue
            kept = {} if carried is None else {k: carried[r] for k, r in enumerate(rows) if carried[r] is not None}
            job = Job(job_id=f"{job_id}/{i}", step=step, prompts=[prompts[r] for r in rows],
                      prompt_ids=[prompt_ids[r] for r in rows], n=n, temperature=temperature,
                      max_tokens=ro.max_new_tokens, min_version=min_version,
                      priority=priority, seed=job_seed(self.recipe.run.seed, job_id, i),
                      interruption=ro.interruption, segment_tokens=ro.partial_segment_tokens if partial else None,
                      env=ro.env, carried=kept)
            part = Part(i, job, self.workers[i].generate.remote(job))
            self._parts[job.job_id] = part
            parts.append(part)
        return parts

    def collect(self, parts: list[Part]) -> RolloutBatch:
        results: dict[int, RolloutBatch] = {}
        while len(results) < len(parts):
            todo = [k for k in range(len(parts)) if k not in results]
            try:
                values = gather([parts[k].ref for k in todo])
            except ActorDied as err:
                self.replace(parts[todo[err.index]].worker)
                continue
            except Exception as err:  # noqa: BLE001 - a part raised: replace its worker once, then stop
                k = getattr(err, "gather_index", None)
                if k is None or isinstance(err, DEATHS):  # not the part's own error (a callee died)
                    raise
                part = parts[todo[k]]
                part.failures += 1
                if part.failures > 1:
                    raise RolloutFailed(part.worker, err) from None
                log.warning("rollout worker %d: job %s raised; starting a replacement and running it again. "
                            "The error:\n%s", part.worker, part.job.job_id, err)
                self.replace(part.worker, why="raised")
                continue
            results.update(zip(todo, values))
        for p in parts:
            self._parts.pop(p.job.job_id, None)
        batches = [results[k] for k in range(len(parts))]
        return RolloutBatch(step=batches[0].step, groups=[g for b in batches for g in b.groups],
                            gen_seconds=max(b.gen_seconds for b in batches))

    # ---- weights ------------------------------------------------------------------
    def sync(self, version: int, skipped: bool) -> None:
        """Bring every engine to `version`: new weights, or (skipped update) only
        the version number."""
        self.version = version
        try:
            if skipped:
                acked = gather([w.set_version.remote(version) for w in self.workers])
                for i, v in enumerate(acked):
                    self.acks[i].append(v)
            else:
                self._push(list(range(len(self.workers))))
        except ActorDied as err:  # indices are workers'; learner deaths raise LearnerFailure
            self.replace(err.index)  # pushes `version` to the new worker

    def _push(self, targets: list[int]) -> None:
        """Learner -> workers[targets] (a collective push: every worker);
        worker deaths raise ActorDied(worker index), learner deaths
        LearnerFailure."""
        refs = self.learner.push_weights_refs()
        timeout = self.recipe.pipeline.weight_sync_timeout_s
        if not self.transport.collective:  # rank 0's bytes, handed to each worker
            payload = self.learner.wait(refs)[0]
            try:
                acked = gather([self.workers[i].receive_weights.remote(self.version, payload) for i in targets],
                               timeout=timeout)
            except ActorDied as err:  # report the worker's index, as the docstring promises
                raise ActorDied(targets[err.index], err.cause) from None
            for i, v in zip(targets, acked):
                self.acks[i].append(v)
            return
        worker_refs = [self.workers[i].receive_weights.remote(self.version) for i in range(len(self.workers))]
        try:
            gather(worker_refs, timeout=timeout)
        except ActorDied:
            try:  # the sender fails at once on a dead peer (gloo: connection closed) or times out
                self.learner.wait(refs)
            except LearnerFailure:
                raise
            except Exception:  # noqa: BLE001 - its peer died mid-push; the caller rebuilds the group
                pass
            raise
        self.learner.wait(refs)
        for i, ref in enumerate(worker_refs):
            self.acks[i].append(ray.get(ref))

    def _connect(self, fresh: Optional[list[int]] = None) -> None:
        """(Re)build the weight path: a sender on every learner rank, a
        receiver in every worker and, for a collective transport, a new group
        for them to meet in, whose store learner rank 0 binds on a port the OS
        picks before anyone connects. A transport that is not collective
        shares nothing between its ends, so replacing workers (`fresh`)
        connects only their receivers. Every side is waited on at once, so a
        death shows at once, not after the others' connect timeout."""
        timeout = self.recipe.pipeline.weight_sync_timeout_s
        sources = len(self.learner.actors)  # every learner rank sends its shards
        group, name = None, self.transport.name
        if self.transport.collective:
            group = self.learner.host_weight_group(self.backend, sources + len(self.workers), timeout)
        whole = fresh is None or self.transport.collective
        targets = list(range(len(self.workers))) if whole else fresh
        refs = [self.workers[i].connect_weights.remote(name, group, sources + i) for i in targets]
        if whole:
            refs += self.learner.connect_weights_refs(name, group)
        try:
            gather(refs, timeout=timeout)
        except ActorDied as err:
            if err.index >= len(targets):
                raise LearnerFailure(err.index - len(targets), err.cause) from None
            raise ActorDied(targets[err.index], err.cause) from None

    # ---- recovery -------------------------------------------------------------------
    def replace(self, i: int, why: str = "died") -> None:
        """Start a new worker in place of workers[i], give it the current
        weights and resubmit the job parts the dead one held. Another worker
        found dead meanwhile (a lost node takes all of its workers) is
        replaced in the same pass."""
        fresh = [i]
        self._restart(i, why)
        while True:
            try:
                self._connect(fresh)
                if self.transport.collective:
                    self._push(list(range(len(self.workers))))
                elif self.version > 0:
                    self._push(fresh)
                break
            except ActorDied as err:  # indices are workers'; learner deaths raise LearnerFailure
                fresh.append(err.index)
                self._restart(err.index)
        for part in self._parts.values():
            if part.worker in fresh:
                part.ref = self.workers[part.worker].generate.remote(part.job)

    def _restart(self, i: int, why: str = "died") -> None:
        log.warning("rollout worker %d %s; starting a replacement", i, why)
        try:
            ray.kill(self.workers[i])
        except Exception:  # noqa: BLE001 - already gone
            pass
        deadline = time.monotonic() + self.recipe.rollout.restart_wait_s
        while True:
            self.workers[i] = self._new_worker(i)
            try:
                self._wait_started(i)
                break
            except ray.exceptions.RayActorError:  # placed on a node that was dying, before Ray noticed
                if time.monotonic() > deadline:
                    raise RolloutLost(i, self.pg.bundle_specs[i], self.recipe.rollout.restart_wait_s) from None
                time.sleep(2.0)  # until the lost node's bundles are re-placed (or found homeless)
        self.on_restart(i)

    def _wait_started(self, i: int) -> None:
        """Wait for workers[i]'s engine. While its bundle has no node (Ray
        is moving a lost node's bundles, or cannot), wait at most
        `rollout.restart_wait_s`, then raise RolloutLost."""
        from ray.util.placement_group import placement_group_table

        ready = self.workers[i].version.remote()
        limit = self.recipe.rollout.restart_wait_s
        homeless_since = None
        while not ray.wait([ready], timeout=2.0)[0]:
            table = placement_group_table(self.pg)
            placed = table.get("state") == "CREATED" and i in table.get("bundles_to_node_id", {})
            if placed:
                homeless_since = None
            elif homeless_since is None:
                homeless_since = time.monotonic()
            elif time.monotonic() - homeless_since > limit:
                ray.kill(self.workers[i])
                raise RolloutLost(i, table.get("bundles", {}).get(i, {}), limit)
        ray.get(ready)

    def _new_worker(self, i: int):
        r = self.recipe
        return self._cls.options(
            num_cpus=r.rollout.cpus_per_worker, num_gpus=r.rollout.gpus_per_worker,
            runtime_env={"env_vars": dict(ENGINE_ENV)},
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i),
        ).remote(self.model_path, r.model.engine_config(r.rollout.engine), self.hub, i)

    def _each(self, call: Callable[[Any], Any]) -> list:
        """One call per worker, replacing a dead worker and asking again."""
        while True:
            try:
                return gather([call(w) for w in self.workers])
            except ActorDied as err:
                self.replace(err.index)

    # ---- probes, accounting, shutdown -----------------------------------------------
    def score(self, prompts: list[list[int]], completions: list[list[int]], temperature: float) -> list:
        """Each engine's log-probs of fixed completions: [(version, logprobs), ...]."""
        return self._each(lambda w: w.score.remote(prompts, completions, temperature))

    def cpu_seconds(self) -> float:
        return float(sum(self._each(lambda w: w.cpu_seconds.remote())))

    def generated_tokens(self) -> int:
        """Tokens generated so far by the live engines (a replaced one restarts at 0)."""
        return int(sum(self._each(lambda w: w.generated_tokens.remote())))

    def ready(self, parts: list[Part]) -> bool:
        """Whether every part of a job has finished (never blocks)."""
        refs = [p.ref for p in parts]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        return len(done) == len(refs)

    def stop(self) -> None:
        for w in self.workers:
            try:
                ray.get(w.stop.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - stopping is best effort
                pass
            ray.kill(w)

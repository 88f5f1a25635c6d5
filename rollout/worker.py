"""The Ray rollout actor: one vLLM engine, driven step by step in its own
thread, taking new weights between decode steps (PipelineRL style).

Jobs (a training step's prompts, or an evaluation) arrive through
`generate`, which blocks its caller until the job's groups are generated and
scored. A job carries `min_version`: its requests enter the engine only once
the engine's weights are at least that version, which is how the controller
bounds staleness to `max_off_policy_steps`. Weights arriving while requests
are in flight are loaded between two engine steps; the KV cache is kept and
every token records the version that produced it.

Each finished prompt group is sent to the reward hub at once, so scoring
overlaps generation of the rest of the batch. Which engine requests a job
needs (forced interruption, partial rollouts and their continuation) is
rollout.jobs' business; a group left with a partial sample is returned
unscored, for the controller to carry into a later job.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from rollout.jobs import Job, JobRun, Request, job_of
from rollout.types import RolloutBatch

__all__ = ["Job", "RolloutWorker"]


@dataclass
class _JobState:
    job: Job
    run: Optional[JobRun] = None  # set when admitted
    reward_refs: dict[int, Any] = field(default_factory=dict)  # prompt index -> hub result
    done: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0
    error: Optional[BaseException] = None


class RolloutWorker:
    def __init__(self, model_path: str, engine_cfg, hub, index: int = 0):
        self.model_path, self.engine_cfg, self.hub, self.index = model_path, engine_cfg, hub, index
        self._cond = threading.Condition()
        self._waiting: list[_JobState] = []
        self._active: dict[str, _JobState] = {}
        self._pending_weights: Optional[tuple[int, Any, concurrent.futures.Future]] = None
        self._calls: list[tuple[Any, concurrent.futures.Future]] = []  # run on the engine thread
        self._version = 0
        self._stop = False
        self._ready = threading.Event()
        self._init_error: Optional[BaseException] = None
        self._receiver = None  # this worker's end of the weight transport (connect_weights)
        self.tokens_generated = 0
        self._busy_s = 0.0  # engine-thread seconds spent stepping, loading weights, scoring
        self._thread = threading.Thread(target=self._loop, name="engine-loop", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._init_error is not None:
            raise self._init_error

    # ---- called by the controller -------------------------------------------
    def generate(self, job: Job) -> RolloutBatch:
        state = _JobState(job)
        with self._cond:
            self._waiting.append(state)
            self._waiting.sort(key=lambda s: -s.job.priority)
            self._cond.notify_all()
        state.done.wait()
        if state.error is not None:
            raise state.error
        return self._assemble(state)

    def connect_weights(self, transport: str, group, rank: int) -> bool:
        """(Re)build this worker's receiver, joining `group` as `rank` (None
        for a transport without one; a replaced peer means a new group)."""
        from rollout.weights import make_transport
        if self._receiver is not None:
            self._receiver.close()
        self._receiver = make_transport(transport).receiver(group, rank)
        return True

    def receive_weights(self, version: int, payload: Optional[bytes] = None) -> int:
        """Load the weights of one push (`payload`: what the learner's sender
        returned, for a transport that moves its bytes through the caller).
        A streamed push is loaded by the engine thread tensor by tensor as
        they arrive (it generates nothing meanwhile), so no second copy of
        the model is held here; returns once they are loaded."""
        self._stage(version, self._receiver.receive(payload))
        return version

    def set_version(self, version: int) -> int:
        """Advance the version without new weights (a skipped update)."""
        self._stage(version, None)
        return version

    def version(self) -> int:
        return self._version

    def score(self, prompt_ids: list[list[int]], completion_ids: list[list[int]], temperature: float = 1.0):
        """Log-probs of fixed completions under the engine's current weights
        (run between decode steps; in-flight requests continue after)."""
        return self._on_engine(lambda engine: (self._version, engine.score(prompt_ids, completion_ids, temperature)))

    def cpu_seconds(self) -> float:
        from core.clocks import process_tree_core_seconds
        return process_tree_core_seconds()

    def generated_tokens(self) -> int:
        """Tokens this engine has generated so far, for every job."""
        return self.tokens_generated

    def busy_seconds(self) -> float:
        """Seconds the engine has worked (stepped, loaded weights, scored) so far."""
        return self._busy_s

    def peak_rss_gb(self) -> float:
        """This process's peak resident memory since the last call (GiB)."""
        from core.clocks import peak_rss_bytes
        return peak_rss_bytes(reset=True) / 2**30

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    # ---- the engine thread ----------------------------------------------------
    def _on_engine(self, fn):
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            self._calls.append((fn, future))
            self._cond.notify_all()
        return future.result()

    def _stage(self, version: int, state) -> None:
        """Hand weights (a dict, a (name, tensor) stream, or None for a version
        bump) to the engine thread; return once loaded, raising what failed."""
        loaded: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            while self._pending_weights is not None and not self._stop:  # one hand-over at a time
                self._cond.wait(timeout=1.0)
            self._pending_weights = (version, state, loaded)
            self._cond.notify_all()
        while not self._stop:
            try:
                return loaded.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                continue

    def _loop(self) -> None:
        try:
            from rollout.engine import Engine
            self.engine = Engine(self.model_path, self.engine_cfg)
        except BaseException as err:  # surfaced to the constructor
            self._init_error = err
            self._ready.set()
            return
        self._ready.set()
        while True:
            with self._cond:
                while (not self._stop and self._pending_weights is None and not self._calls
                       and not self._admissible() and not self.engine.has_unfinished()):
                    self._cond.wait(timeout=0.5)
                if self._stop:
                    return
                weights, self._pending_weights = self._pending_weights, None
                calls, self._calls = self._calls, []
                admit = [s for s in self._waiting
                         if s.job.min_version <= max(self._version, weights[0] if weights else 0)]
                self._waiting = [s for s in self._waiting if s not in admit]
                self._cond.notify_all()
            t0 = time.perf_counter()
            try:
                if weights is not None:
                    self._load(*weights)
                for fn, future in calls:
                    try:
                        future.set_result(fn(self.engine))
                    except Exception as err:
                        future.set_exception(err)
                for s in admit:
                    self._admit(s)
                if self.engine.has_unfinished():
                    for c in self.engine.step():
                        self._finish(c)
                self._busy_s += time.perf_counter() - t0
            except BaseException as err:  # fail every job rather than hang callers
                with self._cond:
                    for s in list(self._active.values()) + self._waiting:
                        s.error = err
                        s.done.set()
                    self._active.clear()
                    self._waiting.clear()

    def _load(self, version: int, state, loaded: concurrent.futures.Future) -> None:
        try:
            if state is not None:
                self.engine.load_weights(state, version=version)
            else:
                self.engine.set_version(version)
        except BaseException as err:
            loaded.set_exception(err)
            raise
        self._version = version
        loaded.set_result(None)

    def _admissible(self) -> bool:
        return any(s.job.min_version <= self._version for s in self._waiting)

    def _admit(self, state: _JobState) -> None:
        job = state.job
        state.started = time.perf_counter()
        state.run = JobRun(job, self.engine.tokenizer, self.engine.cfg.max_model_len, self.engine.version)
        self._active[job.job_id] = state
        self._send(state.run, state.run.start())
        self._settle(state)

    def _send(self, run: JobRun, requests: list[Request]) -> None:
        for r in requests:
            self.engine.add(r.request_id, r.prompt_ids, temperature=run.job.temperature,
                            max_tokens=r.max_tokens, seed=r.seed, stop_token_ids=run.stop_ids)

    def _finish(self, completion) -> None:
        state = self._active[job_of(completion.request_id)]
        self.tokens_generated += len(completion.token_ids)
        self._send(state.run, state.run.absorb(completion, self.engine.version))
        self._settle(state)

    def _settle(self, state: _JobState) -> None:
        """Score the groups that just finished; close the job once all are settled."""
        run = state.run
        for p in run.take_settled():
            if run.finished(p):
                state.reward_refs[p] = self.hub.score_groups_async([run.reward_items(p)])
        if run.done:
            run.close_env()
            del self._active[state.job.job_id]
            state.done.set()

    def _assemble(self, state: _JobState) -> RolloutBatch:
        import ray
        run = state.run
        groups = [run.group(p, ray.get(state.reward_refs[p])[0] if p in state.reward_refs else None)
                  for p in range(len(state.job.prompts))]
        return RolloutBatch(step=state.job.step, groups=groups, gen_seconds=time.perf_counter() - state.started)

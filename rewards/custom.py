"""How a hub replica runs a reward function (a recipe's `rewards.custom`, or a
built-in one such as `reasoning_gym`): on function worker processes
(rewards.fn_worker) it can kill, with the math kind's limits and rules.

A batch runs on the active worker with `timeout_s` of wall clock per item (a
TRL-shaped function, called once per batch, gets the batch's total). An item
that fails (runs past its time, raises, kills its worker, returns something
that is not a reward) runs once more alone on a fresh worker under a limit
of `timeout_s` CPU seconds (the checker-failure rule of rewards.types):
- a value: that is the result;
- it raises again, returns a non-reward again, runs out of its CPU seconds
  or crashes: a verdict of 0, unmasked (`content_failure`; the line names the
  function and what it did), since a response can be written to make a
  checker fail;
- a kill from outside, or a wall clock past RETRY_WALL_FACTOR × the budget
  with CPU to spare (a loaded machine): masked and counted.
None from the function masks the sample (`error` names the function). The
worker pair starts on first use, so a kind no sample names costs nothing.
"""
from __future__ import annotations

import collections
import os
import signal
from dataclasses import dataclass
from typing import Iterator, Optional

from rewards.math_pool import _OUTSIDE, RETRY_WALL_FACTOR, Worker
from rewards.types import RewardResult, Sample, content_failure, failed


@dataclass
class Outcome:
    """What the function workers made of one item."""

    value: Optional[float] = None
    error: Optional[str] = None  # masked
    timeout: bool = False
    failure: Optional[str] = None  # first run only: why it runs again, alone
    content_failure: Optional[str] = None
    retried: bool = False


class FunctionPool:
    """An active function worker plus a warm spare."""

    def __init__(self, target: str, shape: Optional[str], paths: tuple[str, ...] = (), memory_mb: int = 4096):
        self.argv = ("rewards.fn_worker", target, shape or "auto")
        self.batched = shape == "trl"
        self.paths, self.memory_mb = paths, memory_mb
        self.active, self.spare = self._new(), self._new()
        self.restarts = 0

    def _new(self) -> Worker:
        return Worker(self.memory_mb, self.argv, self.paths)

    def _replace(self) -> None:
        self.active.kill()
        self.active, self.spare = self.spare, self._new()
        self.restarts += 1

    def run(self, items: list[dict], timeout_s: float) -> list[Outcome]:
        outcomes = self._batch(items, timeout_s)
        for i, o in enumerate(outcomes):
            if o.failure is not None:
                outcomes[i] = self._alone(items[i], timeout_s)
        return outcomes

    def _batch(self, items: list[dict], timeout_s: float) -> list[Outcome]:
        outcomes: list[Optional[Outcome]] = [None] * len(items)
        pending = collections.deque(range(len(items)))
        while pending:
            self.active.wait_ready()
            self.active.send([(i, items[i]) for i in pending])
            wait = timeout_s * len(pending) if self.batched else timeout_s  # one call answers a TRL batch
            while pending:
                i = pending.popleft()
                try:
                    _, value, err = self.active.recv(wait)
                    wait = timeout_s
                except TimeoutError:
                    outcomes[i] = Outcome(failure=f"timeout after {timeout_s:g}s")
                except (EOFError, OSError):
                    outcomes[i] = Outcome(failure="the function's worker died")
                else:
                    outcomes[i] = Outcome(failure=err) if err is not None else Outcome(value=value)
                    self.active.tainted |= err is not None
                    continue
                self._replace()
                break
        return outcomes  # type: ignore[return-value]

    def _alone(self, item: dict, cpu_s: float) -> Outcome:
        if self.active.tainted:
            self._replace()
        worker = self.active
        worker.wait_ready()
        wall_s = RETRY_WALL_FACTOR * cpu_s
        worker.send(("alone", 0, item, cpu_s))
        limit = None
        try:
            frame = worker.recv(wall_s)
            if frame[0] == "armed":
                limit = frame[1]
                frame = worker.recv(wall_s)
        except TimeoutError:
            _, cpu = worker.end(kill=True)
            self._replace()
            if limit is not None and cpu >= limit:
                return Outcome(content_failure=f"used its {cpu_s:g} CPU seconds", timeout=True, retried=True)
            return Outcome(error=f"wall clock past {wall_s:g}s within the CPU budget ({cpu:.1f} CPU seconds "
                           "used: a loaded machine)", timeout=True, retried=True)
        except (EOFError, OSError):
            status, cpu = worker.end(kill=False)
            self._replace()
            return _death(status, cpu, limit, cpu_s)
        _, value, err = frame
        if err is not None:
            worker.tainted = True
            return Outcome(content_failure=err, retried=True)
        return Outcome(value=value, retried=True)

    def close(self) -> None:
        self.active.kill()
        self.spare.kill()


def _death(status: Optional[int], cpu: float, limit: Optional[int], cpu_s: float) -> Outcome:
    if status is None:
        return Outcome(error="function worker died with an unknown status", retried=True)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    out_of_cpu = sig == signal.SIGXCPU or (limit is not None and cpu >= limit)
    if sig in _OUTSIDE and not out_of_cpu:
        return Outcome(error=f"function worker killed from outside ({signal.Signals(sig).name})", retried=True)
    if out_of_cpu:
        return Outcome(content_failure=f"used its {cpu_s:g} CPU seconds", timeout=True, retried=True)
    how = signal.Signals(sig).name if sig is not None else f"exit code {os.WEXITSTATUS(status)}"
    return Outcome(content_failure=f"crashed ({how})", retried=True)


def function_result(name: str, o: Outcome) -> RewardResult:
    """The reward of one item scored by function `name`."""
    if o.content_failure is not None:
        return content_failure(f"reward function '{name}' {o.content_failure}", timeout=o.timeout)
    if o.error is not None:
        r = failed(f"reward function '{name}': {o.error}", timeout=o.timeout)
    elif o.value is None:
        r = failed(f"reward function '{name}' returned None")
    else:
        r = RewardResult(o.value, {"correct": o.value >= 1.0, "timeout": False, "terms": {}})
    if o.retried:
        r.details["retried"] = True
    return r


def item_of(sample: Sample, settings: Optional[dict] = None) -> dict:
    """What a function is given of a sample; a built-in function's `settings`
    (from the recipe) ride in its metadata under SETTINGS."""
    meta = sample.get("meta") or {}
    if settings:
        meta = {**meta, SETTINGS: settings}
    return {"prompt": sample.get("prompt"), "response": sample.get("response") or "",
            "answer": sample.get("answer"), "meta": meta}


SETTINGS = "_asymptote"


class FunctionRunner:
    """A kind scored by a function (rewards.registry's Runner): every sample
    kept at `start`, the batch run on the pool at `finish`."""

    def __init__(self, name: str, target: str, shape: Optional[str], cfg, paths: tuple[str, ...] = (),
                 settings: Optional[dict] = None):
        self.name, self.target, self.shape, self.paths = name, target, shape, paths
        self.cfg, self.settings = cfg, settings
        self._pool: Optional[FunctionPool] = None

    @property
    def pool(self) -> FunctionPool:
        if self._pool is None:
            self._pool = FunctionPool(self.target, self.shape, self.paths)
        return self._pool

    def start(self, i: int, sample: Sample, pending: list) -> Optional[RewardResult]:
        pending.append((i, item_of(sample, self.settings)))
        return None

    def finish(self, pending: list) -> Iterator[tuple[int, RewardResult]]:
        if not pending:
            return
        try:
            outcomes = self.pool.run([item for _, item in pending], self.cfg.timeout_s)
        except (RuntimeError, EOFError, OSError, TimeoutError) as err:
            # a worker that could not start (the function does not import on this node): every
            # item is masked, and the next batch starts a fresh pool
            reason = str(err) or f"the function's worker did not start ({type(err).__name__})"
            outcomes = [Outcome(error=reason)] * len(pending)
            self.close()
            self._pool = None
        for (i, _), o in zip(pending, outcomes):
            yield i, function_result(self.name, o)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

"""`gather(refs)`: `ray.get` of a list that fails fast and names the dead actor.

`ray.get([a, b])` waits for `a` before it looks at `b`: if `b`'s actor died
while `a` is blocked in a collective with it, the caller learns of the death
only when `a` gives up (minutes, with gloo's default timeout). `gather` waits
on all refs at once and raises `ActorDied(index)` as soon as any actor is
gone. A task that raised (rather than died) is re-raised as is, unless an
actor death shows up within a short grace period: when one rank of a
collective dies, its peers fail with "connection closed" first, and the
death is the cause worth reporting. A re-raised error carries
`gather_index`, the position of the ref whose call raised it.
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

import ray
from ray.exceptions import (GetTimeoutError, NodeDiedError, OutOfMemoryError, RayActorError, RayTaskError,
                            WorkerCrashedError)

# What ray.get raises when the process behind a call is gone: an actor's
# death, and (from the memory monitor or a lost node) these three.
DEATHS = (RayActorError, OutOfMemoryError, NodeDiedError, WorkerCrashedError)

GRACE_S = 10.0


class ActorDied(Exception):
    """The actor behind refs[index] died (killed, OOM, node lost)."""

    def __init__(self, index: int, cause: BaseException):
        super().__init__(f"actor {index} died: {str(cause).splitlines()[0] if str(cause) else type(cause).__name__}")
        self.index, self.cause = index, cause


def gather(refs: Sequence, timeout: Optional[float] = None) -> list:
    """Values of all refs, in order; raises ActorDied / the task's error /
    GetTimeoutError (after `timeout` seconds) as soon as it knows."""
    index = {ref: i for i, ref in enumerate(refs)}
    pending = list(refs)
    deadline = None if timeout is None else time.monotonic() + timeout
    first_error: Optional[tuple[float, BaseException]] = None
    while pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if first_error is not None:
            grace = first_error[0] + GRACE_S - time.monotonic()
            if grace <= 0:
                raise first_error[1]
            left = grace if left is None else min(left, grace)
        ready, pending = ray.wait(pending, num_returns=1, timeout=left)
        if not ready:
            if first_error is not None:
                continue
            raise GetTimeoutError(f"{len(pending)} of {len(refs)} calls unfinished after {timeout} s")
        for ref in ready:
            try:
                ray.get(ref)
            except Exception as err:  # noqa: BLE001 - re-raised below unless a death explains it
                if isinstance(err, DEATHS) and not isinstance(err, RayTaskError):
                    raise ActorDied(index[ref], err) from None
                if first_error is None:  # the task's own error, or an actor error of its own callee
                    err.gather_index = index[ref]
                    first_error = (time.monotonic(), err)
    if first_error is not None:
        raise first_error[1]
    return ray.get(list(refs))

"""Stopping the reward side's Ray actors (hub replicas, judge engines)."""
from __future__ import annotations

import ray


def close_and_kill(actors: list, timeout_s: float = 30.0) -> None:
    """Ask every actor to `close()` (waiting at most `timeout_s`), then kill
    each of them; an actor already gone is not an error."""
    try:
        ray.get([a.close.remote() for a in actors], timeout=timeout_s)
    except Exception:  # noqa: BLE001  (actors may already be gone)
        pass
    for a in actors:
        ray.kill(a)

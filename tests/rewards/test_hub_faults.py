"""A hub replica SIGKILLed mid-request: Ray restarts it, re-runs its pending
calls, the handle counts the restart, and its math workers do not outlive it.

The test starts its own hub (the shared `hub` fixture must not lose a
replica) and kills the replica whose math worker is stuck on an item that
only a kill stops (`9^{9^{9^9}}` in GMP): the case that used to leave an
orphan burning a core. The PID comes from Ray's state API, never a name.
"""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

TOWER = "9^{9^{9^{9}}}"


def _math(answer, boxed):
    return {"kind": "math", "response": f"<think>work</think> \\boxed{{{boxed}}}", "answer": answer}


def _actors(*filters) -> list:
    """Ray state API on this session's cluster (another may run on the box)."""
    import ray
    from ray.util.state import list_actors

    return list_actors(address=ray.get_runtime_context().gcs_address, filters=list(filters), detail=True)


def _alive_replicas() -> dict[str, int]:
    actors = _actors(("class_name", "=", "RewardReplica"), ("state", "=", "ALIVE"))
    return {a.actor_id: a.pid for a in actors}


def _cpu(proc: psutil.Process) -> float:
    try:
        return sum(proc.cpu_times()[:2])
    except psutil.Error:
        return 0.0


def _busy_children(pids, window_s: float = 1.0) -> set[int]:
    """Replica PIDs with a child that used CPU over the window (an idle math
    worker uses none; the box may be shared, so a busy one gets what it can)."""
    kids = {pid: psutil.Process(pid).children(recursive=True) for pid in pids}
    before = {k.pid: _cpu(k) for ks in kids.values() for k in ks}
    time.sleep(window_s)
    return {pid for pid, ks in kids.items() if any(_cpu(k) - before[k.pid] > 0.1 * window_s for k in ks)}


def _wait_for(predicate, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.2)
    return predicate()


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_killed_replica_is_restarted_and_its_calls_rerun(ray_local):
    import ray

    from rewards.config import RewardsConfig
    from rewards.hub import start_hub

    others = _alive_replicas()  # e.g. the shared hub's replicas: never touched
    hub = start_hub(RewardsConfig(replicas=2, replica_cpus=0.25, timeout_s=10.0, max_batch=64,
                                  replica_max_restarts=2))
    try:
        mine = {aid: pid for aid, pid in _alive_replicas().items() if aid not in others}
        assert len(mine) == 2
        assert _wait_for(lambda: not _busy_children(mine.values()))  # warm spares done importing
        cpu_before = hub.cpu_seconds()

        tower_ref = hub.score_async([_math("1", TOWER)])  # holds one replica's scorer until killed
        busy = _wait_for(lambda: _busy_children(mine.values()))
        assert len(busy) == 1
        (victim,) = busy
        (victim_id,) = [aid for aid, pid in mine.items() if pid == victim]
        workers = psutil.Process(victim).children(recursive=True)
        assert len(workers) == 2  # active (in GMP) and warm spare

        # 256 single-sample groups: fast-path and math-verify items, right and wrong;
        # the victim's chunks queue behind the tower, so they are in flight at the kill
        items, want = [], []
        for n in range(64):
            items += [_math(str(n), str(n)), _math(str(n), str(n + 1)),
                      _math(f"{n}.5", rf"\frac{{{2 * n + 1}}}{{2}}"), _math(f"{n}.5", rf"\frac{{{2 * n + 3}}}{{2}}")]
            want += [1.0, 0.0, 1.0, 0.0]
        batch_ref = hub.score_async(items)
        os.kill(victim, signal.SIGKILL)

        scores = [g[0].score for g in ray.get(batch_ref)]
        assert scores == want
        # the restarted replica scored the calls that were pending on the dead one
        assert all(m["items"] > 0 for m in ray.get([r.metrics.remote() for r in hub.replicas]))
        ((tower,),) = ray.get(tower_ref)  # re-run from scratch, timed out again
        assert tower.score == 0.0 and tower.details["timeout"] is True

        assert hub.replica_restarts() == 1
        assert hub.replica_restarts() == 1  # counted once, not on every call
        (state,) = _actors(("actor_id", "=", victim_id))
        assert state.state == "ALIVE" and state.num_restarts == 1 and state.pid != victim
        assert hub.cpu_seconds() >= cpu_before

        # the dead replica's math workers died with it, the busy one included
        assert _wait_for(lambda: all(_gone(w) for w in workers), timeout_s=30)

        after = hub.score([_math("0.25", r"\frac{1}{4}"), _math("2", "3")] * 8)
        assert [r.score for r in after] == [1.0, 0.0] * 8
    finally:
        hub.shutdown()


@pytest.mark.parametrize("bad", [-1, 1.5])
def test_replica_max_restarts_is_checked(bad):
    from pydantic import ValidationError

    from rewards.config import RewardsConfig

    with pytest.raises(ValidationError, match="replica_max_restarts"):
        RewardsConfig(replica_max_restarts=bad)

"""One reward hub (2 replicas, short limits) shared by every hub test.

The secret below is put into this process's environment at collection time,
before `ray_local` starts the cluster, so Ray workers (and the hub replicas)
inherit it: the hostile-program suite proves the sandbox cannot read it.
"""
from __future__ import annotations

import os

import pytest

SECRET_ENV = "ASYMPTOTE_TEST_SANDBOX_SECRET"
SECRET_VALUE = "hunter2-" + os.urandom(4).hex()
os.environ.setdefault(SECRET_ENV, SECRET_VALUE)


def hub_config():
    from rewards.config import RewardsConfig

    return RewardsConfig(
        replicas=2, replica_cpus=0.5, timeout_s=3.0, max_batch=64, cache_size=1000,
        terms={"math": 1.0},
        sandbox=dict(wall_s=2.0, cpu_s=2, memory_mb=256, max_procs=16, file_size_mb=8, disk_mb=16,
                     output_bytes=65536, concurrency=2),
    )


@pytest.fixture(scope="session")
def hub(ray_local):
    from rewards.hub import start_hub

    h = start_hub(hub_config())
    yield h
    h.shutdown()

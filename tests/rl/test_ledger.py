"""The compute ledger's CPU clocks count what a run spends and nothing else:
a sandbox program or a killed helper that has exited is still counted, and
the driver's clock does not move while only the live fitter works."""
from __future__ import annotations

import time

import pytest

from core.clocks import ThreadClock, peak_rss_bytes, process_tree_core_seconds

BURN = """
import time
while time.process_time() < 1.0:
    pass
print(repr(time.process_time()))
"""


@pytest.fixture(scope="module")
def replica_like(ray_local):
    """A bare Ray actor, as a hub replica is: its process tree is itself and
    the children it starts."""
    @ray_local.remote(num_cpus=0)
    class Probe:
        def sandbox_run(self):
            import resource

            from rewards.config import SandboxConfig
            from rewards.sandbox import run_python
            from core.clocks import process_tree_core_seconds

            def own():
                ru = resource.getrusage(resource.RUSAGE_SELF)
                return ru.ru_utime + ru.ru_stime

            t0, s0 = process_tree_core_seconds(), own()
            result = run_python(BURN, limits=SandboxConfig(wall_s=120, cpu_s=30))  # a busy machine is slow
            t1, s1 = process_tree_core_seconds(), own()
            return result.stdout, result.ok or result, (t1 - t0) - (s1 - s0)

        def killed_child(self):
            import resource
            import signal
            import subprocess
            import sys

            import psutil

            from core.clocks import process_tree_core_seconds

            def own():
                ru = resource.getrusage(resource.RUSAGE_SELF)
                return ru.ru_utime + ru.ru_stime

            t0, s0 = process_tree_core_seconds(), own()
            child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            p = psutil.Process(child.pid)
            while sum(p.cpu_times()[:2]) < 0.5:
                time.sleep(0.05)
            child.send_signal(signal.SIGSTOP)  # its CPU time stops here
            time.sleep(0.05)
            burned = sum(p.cpu_times()[:2])
            child.kill()
            child.wait()  # reaped, as the math pool reaps a worker it killed
            t1, s1 = process_tree_core_seconds(), own()
            return burned, (t1 - t0) - (s1 - s0)

    return Probe.remote()


def test_an_exited_sandbox_program_is_counted(ray_local, replica_like):
    stdout, ok, children = ray_local.get(replica_like.sandbox_run.remote())
    assert ok is True, ok
    burned = float(stdout.strip())  # the program's own CPU time, as it measured it
    assert burned >= 1.0
    # bwrap and the sandboxed interpreter's start-up come on top; before, 0 was counted
    assert burned - 0.05 <= children <= burned + 2.0  # /proc counts whole clock ticks


def test_a_killed_helper_is_counted(ray_local, replica_like):
    burned, children = ray_local.get(replica_like.killed_child.remote())
    assert burned >= 0.5
    assert children == pytest.approx(burned, abs=0.05)


def test_driver_clock_stands_still_while_only_the_fitter_works(tmp_path):
    from rl.monitor.config import MonitorConfig
    from rl.monitor.live import LiveFitter
    from tests.rl.monitor.test_live import _points

    clock = ThreadClock()  # the controller's: its loop's thread
    fitter = LiveFitter(tmp_path, MonitorConfig(bootstrap=200, target_budget=20000.0))
    c0, p0 = clock.seconds(), time.process_time()
    fitter.submit(_points(41))
    assert fitter.wait(120)
    c1, p1 = clock.seconds(), time.process_time()
    fitter.close()
    assert fitter.latest().get("fit/error") == 0.0
    # the fit did cost CPU here (0.42-0.51 s on this machine, 0.20 once in a fresh clone under CI load)
    assert fitter.cpu_seconds > 0.05 and p1 - p0 >= fitter.cpu_seconds
    assert c1 - c0 < min(0.05, fitter.cpu_seconds / 10)  # none of it is the driver's (measured: < 0.001 s)


def test_peak_rss_window_restarts_at_each_read():
    import numpy as np

    peak_rss_bytes(reset=True)
    block = np.ones(200 << 20, dtype=np.uint8)  # 200 MiB, touched
    with_block = peak_rss_bytes(reset=True)
    del block
    peak_rss_bytes(reset=True)  # this window still began with the block resident
    after = peak_rss_bytes(reset=True)
    assert with_block - after >= 190 << 20


def test_step_flops_use_each_samples_real_lengths():
    from rl.monitor.utilisation import step_flops
    from rollout.types import Group, Sample

    def sample(n):
        return Sample(token_ids=[1] * n, logprobs=[0.0] * n, versions=[0] * n, finish_reason="stop")

    group = Group(prompt={}, prompt_ids=[7] * 10, samples=[sample(4), sample(6)])
    gen, train = step_flops([group], train_lengths=[14, 16], dropped=5, n_params=100, layers=2, hidden=8)
    # generate 2N + 4Lh(s): s = prompt + half the completion; 64 = 4 * 2 * 8
    kept = 4 * (200 + 64 * (10 + 2)) + 6 * (200 + 64 * (10 + 3))  # 3872 + 6192
    assert gen == kept + 5 * kept / 10  # dropped tokens at the kept tokens' mean cost
    # train 6N + 12Lh(s): s = the whole row; 192 = 12 * 2 * 8
    assert train == 14 * (600 + 192 * 14) + 16 * (600 + 192 * 16)

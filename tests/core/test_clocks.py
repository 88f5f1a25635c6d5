"""The process clocks count what a process spends and nothing else: a
reaped child is counted, a sandbox program or a killed helper that has
exited is still counted, and a thread's clock moves with that thread's work
only, whichever thread reads it. Each count is checked against a
measurement taken independently (the busy process's or thread's own)."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from core.clocks import ThreadClock, peak_rss_bytes, process_core_seconds, process_tree_core_seconds

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


def _own() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def test_a_reaped_child_is_counted():
    t0, s0 = process_core_seconds(), _own()
    out = subprocess.run([sys.executable, "-c", BURN.replace("1.0", "0.3")], capture_output=True, text=True,
                         check=True)
    t1, s1 = process_core_seconds(), _own()
    burned = float(out.stdout.strip())  # the child's own CPU time, as it measured it
    children = (t1 - t0) - (s1 - s0)
    assert burned - 0.05 <= children <= burned + 2.0  # the interpreter's start-up comes on top


def test_a_thread_clock_counts_its_own_thread_from_any_thread():
    """The driver's clock is its loop's thread: work in another thread (the
    live fit, and the BLAS threads a matmul starts) is in the process's time
    but not in that clock, read from wherever."""
    mine = ThreadClock()
    built, burned = {}, {}
    started, stop = threading.Event(), threading.Event()

    def work():
        built["clock"], t0 = ThreadClock(), time.thread_time()
        started.set()
        a = np.random.default_rng(0).standard_normal((256, 256))
        while not stop.is_set():
            a = np.tanh(a @ a)
        burned["own"] = time.thread_time() - t0
        burned["clock"] = built["clock"].seconds()

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    c0, m0, p0, w0 = mine.seconds(), time.thread_time(), time.process_time(), built["clock"].seconds()
    time.sleep(0.5)
    w1 = built["clock"].seconds()  # the worker's clock, read from this thread
    c1, m1 = mine.seconds(), time.thread_time()
    stop.set()
    worker.join()
    p1 = time.process_time()
    assert w1 > w0  # it moves with the worker's work, read from here
    assert burned["clock"] == pytest.approx(burned["own"], abs=0.01)  # and counts what the worker measured
    assert c1 - c0 == pytest.approx(m1 - m0, abs=0.01)  # this thread's clock: this thread's time only
    assert (p1 - p0) - (c1 - c0) >= w1 - w0 - 0.01  # the process counted the worker; this clock did not


def test_peak_rss_window_restarts_at_each_read():
    peak_rss_bytes(reset=True)
    block = np.ones(200 << 20, dtype=np.uint8)  # 200 MiB, touched
    with_block = peak_rss_bytes(reset=True)
    del block
    peak_rss_bytes(reset=True)  # this window still began with the block resident
    after = peak_rss_bytes(reset=True)
    assert with_block - after >= 190 << 20

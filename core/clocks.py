"""Clocks of this process that every layer reads: CPU seconds of the
process (and of its tree, sandboxed orphans included), peak resident
memory, and the CPU time of one thread.

The rollout workers, the reward hub and the judge engines report their own
core-seconds with these, and the controller's compute account sums them
(rl.monitor.ledger); they live below all three so none of them imports the
learner side to read a clock.
"""
from __future__ import annotations

import os
import resource
import threading
import time


def process_core_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and its reaped children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


def process_tree_core_seconds() -> float:
    """CPU seconds used so far by this process and its descendants: each
    live process's own time plus the time of the children it has reaped
    (`children_user`/`children_system`, /proc/<pid>/stat's cutime/cstime).
    So a helper is counted while it runs (the hub's math-verify worker) and
    after it exits, as long as someone in the tree waited for it (a math
    worker killed on a timeout and reaped by its pool). A live process's own
    time never includes a live child's, so nothing is counted twice.

    Sandbox programs need more: bwrap's pid-namespace init reaps the program,
    but the outer bwrap exits without reaping that init, which the kernel
    then hands to the system's init, and its time is lost (measured: a 1 s
    program added 0.002 s to RUSAGE_CHILDREN). So the first call makes this
    process a child subreaper (`adopt_orphans`): such orphans are re-parented
    here instead, and each call reaps the exited ones that live in a deeper
    pid namespace (never a child this process forked itself, whose exit
    status a `subprocess.Popen` still waits for), adding their time to this
    process's own children time."""
    import psutil

    global _ADOPTING
    if not _ADOPTING:
        _ADOPTING = adopt_orphans()
    me = psutil.Process()
    if _ADOPTING:
        _reap_adopted(me)

    def times(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    total = times(me)
    for child in me.children(recursive=True):
        try:
            total += times(child)
        except psutil.Error:
            pass
    return total


_ADOPTING = False


def adopt_orphans() -> bool:
    """Make this process a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`):
    descendants orphaned by their parent are re-parented here rather than to
    the system's init. False where the call is unavailable."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _ns_depth(pid: int | str) -> int:
    """How many pid namespaces `pid` is seen from (NSpid's length)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(len(line.split()) - 1 for line in f if line.startswith("NSpid:"))
    except (OSError, StopIteration):
        return 0


def _reap_adopted(me) -> None:
    """Reap exited children that sit in a deeper pid namespace than this
    process: orphans adopted as subreaper (this process never forks into a
    new pid namespace itself), so no Popen is waiting for them."""
    import psutil

    mine = _ns_depth("self")
    for child in me.children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE and _ns_depth(child.pid) > mine:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError, OSError):
            pass


def peak_rss_bytes(reset: bool = False) -> int:
    """Peak resident memory of this process (Linux VmHWM): since it started,
    or since the last `reset=True` call, which starts a new window (writes 5
    to /proc/self/clear_refs). Where /proc is unavailable: ru_maxrss, the
    lifetime peak."""
    try:
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if reset:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
    return peak


class ThreadClock:
    """CPU seconds used by the thread that built it (read from any thread).

    The driver's training work is its loop's thread: its other threads (the
    live fit and the BLAS threads a fit starts) are bookkeeping, and a
    process-wide clock minus the fit's own thread time would count a fit in
    progress, and its BLAS threads, until it finished."""

    def __init__(self) -> None:
        self._clock = time.pthread_getcpuclockid(threading.get_ident())

    def seconds(self) -> float:
        return time.clock_gettime(self._clock)

"""Cumulative compute of a run on three axes: device time, FLOPs, tokens.

Every training step adds what it spent; the totals go into metrics.jsonl as
`compute/*` columns and are the x-axis of the scaling fit. They are part of the
checkpoint (`state_dict`), so a resumed run continues counting instead of
restarting at zero. Judging (generative rewards) has its own columns beside
them, and the GenRM paper's accounting (rl.monitor.judge_compute).

Device time is accelerator-seconds: GPU-seconds (wall time x GPUs held) on
GPU, and on CPU the core-seconds actually used (user + system CPU time of the
process and its waited-for children, `resource.getrusage`), so "device hours"
on CPU means core-hours. `DeviceClock` measures either.

FLOPs are analytic (PaLM, Chowdhery et al. 2022, App. B), per token:

    train:    6 N + 12 L h s      (forward + backward)
    generate: 2 N +  4 L h s      (forward only)

N = parameters in matmuls (non-embedding parameters plus the LM head),
L = layers, h = hidden size, s = attended context length. The attention term
counts QK^T and AV over the full context (no causal halving, like PaLM); for
generation pass the mean context length if you want the causal average.
"""
from __future__ import annotations

import os
import resource
import threading
import time

from rl.monitor.judge_compute import JUDGE_FIELDS, genrm_columns

_FIELDS = ("device_seconds", "gen_tokens", "train_tokens", "gen_flops", "train_flops")
# judge compute (rl.monitor.judge_compute) and the samples it is per; older checkpoints lack them
_OPTIONAL = ("gen_samples", *JUDGE_FIELDS)


def flops_per_token(n_params: int, n_layers: int, hidden: int, seq_len: int, *, train: bool) -> float:
    """Analytic FLOPs for one token: 6N + 12·L·h·s (train) or 2N + 4·L·h·s (generate)."""
    if min(n_params, n_layers, hidden, seq_len) < 0:
        raise ValueError("flops_per_token: sizes must be non-negative")
    if train:
        return 6.0 * n_params + 12.0 * n_layers * hidden * seq_len
    return 2.0 * n_params + 4.0 * n_layers * hidden * seq_len


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


class DeviceClock:
    """Accelerator-seconds since the last `lap()`.

    On CPU (`n_gpus == 0`): core-seconds of this process and its children. On
    GPU: wall seconds x `n_gpus` (the GPUs are held whether busy or not, which
    is what GPU-hours bill). Work done in other processes (Ray actors) is
    counted by the clock in those processes and summed by the caller.
    """

    def __init__(self, n_gpus: int = 0):
        self.n_gpus = int(n_gpus)
        self._last = self._now()

    def _now(self) -> float:
        return time.perf_counter() * self.n_gpus if self.n_gpus else process_core_seconds()

    def lap(self) -> float:
        now = self._now()
        spent, self._last = max(0.0, now - self._last), now
        return spent


class ComputeLedger:
    """Running totals of device time, tokens and FLOPs, split generation / training."""

    def __init__(self) -> None:
        self._t = dict.fromkeys(_FIELDS + _OPTIONAL, 0.0)

    def add(self, *, device_seconds: float, gen_tokens: int, train_tokens: int,
            gen_flops: float, train_flops: float) -> None:
        """Add one step's spending; every amount must be >= 0."""
        step = dict(device_seconds=device_seconds, gen_tokens=gen_tokens, train_tokens=train_tokens,
                    gen_flops=gen_flops, train_flops=train_flops)
        for k, v in step.items():
            if not v >= 0:
                raise ValueError(f"ComputeLedger.add: {k} must be >= 0, got {v}")
        for k, v in step.items():
            self._t[k] += float(v)

    def exclude(self, device_seconds: float) -> None:
        """Take device time back out of the totals: work found afterwards not
        to be training (an interleaved evaluation's share, rl.evaluation)."""
        if not device_seconds >= 0:
            raise ValueError(f"ComputeLedger.exclude: device_seconds must be >= 0, got {device_seconds}")
        self._t["device_seconds"] = max(0.0, self._t["device_seconds"] - float(device_seconds))

    def add_judge(self, *, samples: int, usage: dict[str, float]) -> None:
        """Add one step's scored samples and judge usage (`JUDGE_FIELDS`, e.g.
        from `JudgeMeter.spent`; missing keys are 0); amounts must be >= 0."""
        step = {"gen_samples": samples, **{k: usage.get(k, 0.0) for k in JUDGE_FIELDS}}
        for k, v in step.items():
            if not v >= 0:
                raise ValueError(f"ComputeLedger.add_judge: {k} must be >= 0, got {v}")
        for k, v in step.items():
            self._t[k] += float(v)

    @property
    def device_seconds(self) -> float:
        return self._t["device_seconds"]

    @property
    def device_hours(self) -> float:
        return self._t["device_seconds"] / 3600.0

    @property
    def flops(self) -> float:
        return self._t["gen_flops"] + self._t["train_flops"]

    @property
    def tokens(self) -> int:
        return int(self._t["gen_tokens"] + self._t["train_tokens"])

    def totals(self) -> dict[str, float]:
        """Cumulative columns for metrics.jsonl (`compute/<axis>`, the fit's x)."""
        t = self._t
        return {
            "compute/device_seconds": t["device_seconds"],
            "compute/device_hours": self.device_hours,
            "compute/flops": self.flops,
            "compute/gen_flops": t["gen_flops"],
            "compute/train_flops": t["train_flops"],
            "compute/tokens": self.tokens,
            "compute/gen_tokens": int(t["gen_tokens"]),
            "compute/train_tokens": int(t["train_tokens"]),
            **genrm_columns(t),  # judge compute, and the GenRM paper's C = S (1 + lambda V)
        }

    def state_dict(self) -> dict[str, float]:
        return dict(self._t)

    def load_state_dict(self, state: dict[str, float]) -> None:
        missing = set(_FIELDS) - set(state)
        if missing:
            raise ValueError(f"ComputeLedger.load_state_dict: missing {sorted(missing)}")
        self._t = {k: float(state.get(k, 0.0)) for k in _FIELDS + _OPTIONAL}

"""One memory account per sandboxed run: a cgroup of its own, charged with
every page the run makes, whatever the route.

RLIMIT_AS bounds one process's address space, but memory a run can hold
without mapping it escapes that: a memfd written with `write()` (each fd
bounded only by RLIMIT_FSIZE), SysV shared memory detached after touching,
message queues, pipe and socket buffers, tmpfs files. A memory cgroup is
charged for all of them (shmem and tmpfs pages, kernel memory), so the run's
total is bounded by one number and the kernel's OOM killer, scoped to the
cgroup, kills the run and nothing else.

Both hierarchies are supported: cgroup v2 where this process's cgroup has the
memory controller delegated to its children, else the v1 memory controller
(this project's machines run as root in a container with cgroup v1: the
hierarchy is writable there). Run groups live under `asymptote-sandbox/` in
this process's own cgroup. Where neither works, `find()` returns None and the
sandbox falls back to refusing the routes with seccomp (rewards.sandbox_seccomp).

A process enters its run group before it execs (the sandbox's `preexec_fn`,
still as root, before it drops to the run's uid), so everything the run
forks is charged from the first page.
"""
from __future__ import annotations

import functools
import itertools
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Optional

BASE = "asymptote-sandbox"


@dataclass(frozen=True)
class Cgroups:
    """Where run groups are made, and in which hierarchy."""

    base: str
    version: int  # 1 or 2

    @property
    def limit_file(self) -> str:
        return "memory.max" if self.version == 2 else "memory.limit_in_bytes"

    def new_run(self, limit_bytes: int) -> "RunGroup":
        path = os.path.join(self.base, f"run-{os.getpid()}-{next(_counter)}")
        os.mkdir(path)
        group = RunGroup(path, self.version)
        try:
            _write(path, self.limit_file, str(limit_bytes))
            if self.version == 2:
                _try_write(path, "memory.swap.max", "0")
                _try_write(path, "memory.oom.group", "1")
            else:
                _try_write(path, "memory.swappiness", "0")
                _try_write(path, "memory.memsw.limit_in_bytes", str(limit_bytes))
        except OSError:
            group.remove()
            raise
        return group


class RunGroup:
    """The cgroup of one run."""

    def __init__(self, path: str, version: int):
        self.path, self.version = path, version
        # opened now, written in the child between fork and exec (no allocation there)
        self._procs = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)

    def enter(self) -> None:
        """Move the calling process into the group (call in the child, as root)."""
        os.write(self._procs, b"0")

    def peak_bytes(self) -> Optional[int]:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int(_read(self.path, name))
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in _read(self.path, name).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill_all(self, timeout_s: float = 5.0) -> None:
        """SIGKILL every process of the run and wait until none is left."""
        if self.version == 2 and _try_write(self.path, "cgroup.kill", "1"):
            pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                pids = [int(p) for p in _read(self.path, "cgroup.procs").split()]
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        try:
            os.close(self._procs)
        except OSError:
            pass
        for _ in range(100):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


def _read(path: str, name: str) -> str:
    with open(os.path.join(path, name)) as f:
        return f.read()


def _write(path: str, name: str, value: str) -> None:
    with open(os.path.join(path, name), "w") as f:
        f.write(value)


def _try_write(path: str, name: str, value: str) -> bool:
    try:
        _write(path, name, value)
        return True
    except OSError:
        return False


_counter = itertools.count(1)  # next() on it is atomic under the GIL
_find_lock = threading.Lock()


def _mounts() -> list[tuple[str, str, str, str]]:
    """(root, mount point, fstype, super options) of every mount."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rest = left.split(), right.split()
                if len(fields) >= 5 and len(rest) >= 3:
                    out.append((fields[3], fields[4], rest[0], rest[2]))
    except OSError:
        pass
    return out


def _own_paths() -> dict[str, str]:
    """Controller list -> this process's cgroup path ('' is the v2 entry)."""
    out = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3:
                    out[parts[1]] = parts[2]
    except OSError:
        pass
    return out


def _candidates() -> list[tuple[str, int]]:
    """(this process's cgroup folder, version) for v2 then v1 memory."""
    own = _own_paths()
    found = []
    for root, point, fstype, opts in _mounts():
        if fstype == "cgroup2" and "" in own:
            path = own[""]
        elif fstype == "cgroup" and "memory" in opts.split(","):
            path = next((p for c, p in own.items() if "memory" in c.split(",")), None)
            if path is None:
                continue
        else:
            continue
        rel = os.path.relpath(path, root) if path.startswith(root) else None
        if rel is not None:
            found.append((os.path.normpath(os.path.join(point, rel)), 2 if fstype == "cgroup2" else 1))
    return sorted(found, key=lambda c: -c[1])


def _usable(folder: str, version: int) -> Optional[Cgroups]:
    base = os.path.join(folder, BASE)
    try:
        os.makedirs(base, exist_ok=True)
        if version == 2 and "memory" not in _read(base, "cgroup.controllers").split():
            return None
        if version == 2 and "memory" not in _read(base, "cgroup.subtree_control").split():
            _write(base, "cgroup.subtree_control", "+memory")
        groups = Cgroups(base, version)
        _sweep(base)
        probe = groups.new_run(64 << 20)
        probe.remove()
        return groups
    except OSError:
        return None


def _sweep(base: str) -> None:
    """Remove run groups left behind by hub processes that died mid-run (a
    group of a live process is its own to remove)."""
    for name in os.listdir(base):
        path = os.path.join(base, name)
        parts = name.split("-")
        if len(parts) != 3 or parts[0] != "run" or not parts[1].isdigit() or _alive(int(parts[1])):
            continue
        try:
            if not _read(path, "cgroup.procs").split():
                os.rmdir(path)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def find() -> Optional[Cgroups]:
    """The cgroups this process can give each run, or None (probed once per
    process, under a lock: the hub's sandbox threads ask at the same time)."""
    with _find_lock:
        return _find()


@functools.lru_cache(maxsize=None)
def _find() -> Optional[Cgroups]:
    for folder, version in _candidates():
        groups = _usable(folder, version)
        if groups is not None:
            return groups
    return None

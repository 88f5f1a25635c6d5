"""Run untrusted Python (model-written code) in a bubblewrap sandbox.

Threat model. The program is hostile: it may try to read secrets (the hub's
environment, the home directory, the host's /tmp), write outside its
directory, reach the network, exhaust CPU, memory, processes, disk or output,
hang, leave processes behind, or kill the hub. It is *not* assumed to carry a
kernel exploit: the boundary is Linux namespaces + rlimits, not a VM, and no
seccomp filter is installed, so the whole syscall surface of the kernel
remains reachable. Run the hub on machines whose kernel you keep patched.

What each run gets (bubblewrap 0.8, `apt-get install -y bubblewrap`):
- new user, pid, net, ipc, uts and cgroup namespaces (`--disable-userns`
  forbids nesting); the net namespace has only a down loopback, so no network;
- a filesystem of read-only /usr (+ the /bin, /lib* links), a fresh /proc and
  minimal /dev. Exactly two places are writable, both size-capped tmpfs that
  share the run's `disk_mb`: /sandbox (3/4; cwd, HOME, and /tmp points into
  it) and /dev/shm (1/4; POSIX shared memory and semaphores). bwrap's own
  root and /dev are tmpfs with no size cap, so both are remounted read-only.
  The host's /tmp, /root, /home, /work, /etc are not mounted at all;
- an empty environment (`--clearenv`) plus PATH, HOME, LANG;
- rlimits: CPU seconds, address space, file size, open files, no core dumps,
  and processes. RLIMIT_NPROC counts per real uid and is ignored for root, so
  when the hub runs as root each run gets its own random unprivileged uid
  (100000..2^31) and the limit bounds exactly that run's processes;
- a wall-clock limit and an output cap enforced from outside: the hub reads
  stdout/stderr itself and SIGKILLs the run's process group when either is
  exceeded;
- teardown: bwrap is the pid-namespace init (`--die-with-parent`), so when the
  program exits or is killed every process it started dies with the
  namespace; as root we also sweep /proc for the run's private uid.

Inodes: bwrap's --tmpfs takes a size but no nr_inodes, and empty files cost
kernel memory (~1 KiB each) but no tmpfs size. Where util-linux `unshare` is
installed, the run starts as `unshare --user --map-root-user --mount sh -c
'mount ...; exec bwrap ...'`: the two tmpfs are mounted with a size and one
inode per 4 KiB of it, in a namespace of the run's own, over empty host
directories that bwrap binds; bwrap (uid 0 in that namespace) is told
--uid 1000 --cap-drop ALL. Without `unshare`, bwrap's --tmpfs is used and
inodes are bounded only by the run's time.

Known limits: memory is bounded per process (RLIMIT_AS x max_procs in total),
not by a cgroup; tmpfs pages count against the host's memory (at most
`disk_mb` per run). docs/sandbox.md has the whole threat model. Without root
the uid switch is skipped and RLIMIT_NPROC counts all of the hub user's
processes, so it is set to (current count + max_procs).
"""
from __future__ import annotations

import functools
import os
import random
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

_MiB = 1 << 20


@dataclass
class SandboxResult:
    returncode: Optional[int]
    stdout: str
    stderr: str
    timed_out: bool = False
    output_truncated: bool = False
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_truncated and self.error is None


def bwrap_path() -> Optional[str]:
    return shutil.which("bwrap")


def sandbox_python(configured: Optional[str] = None) -> str:
    if configured:
        return configured
    if os.path.exists("/usr/bin/python3"):
        return "/usr/bin/python3"
    return os.path.join(sys.base_prefix, "bin", "python3")


def _fs_args(python: str) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    real = os.path.realpath(python)
    if not real.startswith("/usr/"):  # e.g. a pyenv build: expose only its prefix, read-only
        prefix = os.path.dirname(os.path.dirname(real))
        args += ["--ro-bind", prefix, prefix]
    return args


def disk_split(disk_mb: int) -> tuple[int, int]:
    """Bytes of the two writable mounts (/sandbox, /dev/shm): /dev/shm gets a
    quarter of `disk_mb`, the working directory the rest."""
    shm = disk_mb * _MiB // 4
    return disk_mb * _MiB - shm, shm


# Mounts the two writable tmpfs with a size *and* an inode cap (bwrap's own
# --tmpfs takes only a size), inside a user + mount namespace of their own,
# then becomes bwrap. $1: the host directory holding work/ and shm/.
_MOUNT_SCRIPT = (
    'set -e; mount -t tmpfs -o "size=$2,nr_inodes=$3,mode=0755" tmpfs "$1/work"; '
    'mount -t tmpfs -o "size=$4,nr_inodes=$5,mode=0755" tmpfs "$1/shm"; shift 5; exec "$@"'
)
INODE_BYTES = 4096  # one inode allowed per 4 KiB of budget (an inode costs ~1 KiB of kernel memory)


@functools.lru_cache(maxsize=None)
def inode_cap_available() -> bool:
    """True where the writable mounts can carry an inode cap: util-linux
    `unshare` and `mount` exist and a tmpfs mount in a user namespace of our
    own works (tried once per process, so a host that refuses it falls back
    to bwrap's --tmpfs instead of failing every run)."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory(prefix="asymptote-probe-") as d:
        try:
            probe = subprocess.run(
                [unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
                 'mount -t tmpfs -o size=65536,nr_inodes=16 tmpfs "$1"', "sh", d],
                capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.TimeoutExpired):
            return False
    return probe.returncode == 0


def _bwrap_argv(python: str, disk_mb: int, code_fd: int, mount_dir: Optional[str] = None) -> list[str]:
    """bwrap's command line; with `mount_dir`, the unshare + mount prefix that
    gives the writable mounts an inode cap, and bwrap binds them."""
    work, shm = disk_split(disk_mb)
    if mount_dir is None:
        writable = ["--size", str(shm), "--tmpfs", "/dev/shm", "--size", str(work), "--tmpfs", "/sandbox"]
        prefix, identity = [], []
    else:
        writable = ["--bind", f"{mount_dir}/shm", "/dev/shm", "--bind", f"{mount_dir}/work", "/sandbox"]
        prefix = [shutil.which("unshare") or "unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _MOUNT_SCRIPT, "sh", mount_dir,
                  str(work), str(max(64, work // INODE_BYTES)), str(shm), str(max(16, shm // INODE_BYTES))]
        # bwrap then runs as uid 0 of that namespace and would keep its capabilities
        identity = ["--uid", "1000", "--gid", "1000", "--cap-drop", "ALL"]
    return [
        *prefix,
        bwrap_path() or "bwrap",
        "--unshare-user", *identity, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session",
        *_fs_args(python),
        "--proc", "/proc", "--dev", "/dev",
        *writable,
        "--dir", "/sandbox/tmp", "--symlink", "/sandbox/tmp", "/tmp",
        "--file", str(code_fd), "/sandbox/main.py",
        # bwrap's root and /dev are tmpfs without a size: nothing may write there
        "--remount-ro", "/dev", "--remount-ro", "/",
        "--chdir", "/sandbox",
        "--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", "/sandbox",
        "--setenv", "LANG", "C.UTF-8",
        "--", python, "-I", "-B", "/sandbox/main.py",
    ]


def _count_uid_procs(uid: int) -> int:
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def _kill_uid(uid: int) -> None:
    """SIGKILL every process owned by `uid` (root only; a private uid) and
    wait, up to 2 s, until none is left (pid-namespace teardown is async)."""
    for _ in range(200):
        found = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.stat(f"/proc/{pid}").st_uid != uid:
                    continue
                with open(f"/proc/{pid}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                        continue  # a zombie holds nothing; its (foreign) parent reaps it
                found = True
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, IndexError):
                pass
        if not found:
            return
        time.sleep(0.01)


def run_python(code: str, stdin: str = "", *, limits=None) -> SandboxResult:
    """Run `code` as /sandbox/main.py with `stdin`; return its outputs.

    `limits` is a rewards.config.SandboxConfig (defaults when None)."""
    if limits is None:
        from rewards.config import SandboxConfig

        limits = SandboxConfig()
    if bwrap_path() is None:
        return SandboxResult(None, "", "", error="sandbox unavailable: bubblewrap (bwrap) is not installed")
    python = sandbox_python(limits.python)
    as_root = os.geteuid() == 0
    uid = random.randrange(100000, 2**31 - 2) if as_root else os.getuid()
    nproc = limits.max_procs if as_root else _count_uid_procs(uid) + limits.max_procs
    fsize = limits.file_size_mb * _MiB
    mem = limits.memory_mb * _MiB

    def set_limits() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    mount_dir = None
    if inode_cap_available():  # an empty host directory to mount over, in a namespace of the run's own
        mount_dir = tempfile.mkdtemp(prefix="asymptote-sandbox-")
        os.chmod(mount_dir, 0o755)
        for sub in ("work", "shm"):
            os.mkdir(os.path.join(mount_dir, sub), 0o755)
    code_fd = os.memfd_create("sandbox-main", 0)
    try:
        os.write(code_fd, code.encode("utf-8", "replace"))
        os.lseek(code_fd, 0, os.SEEK_SET)
        kwargs = {}
        if as_root:
            kwargs = dict(user=uid, group=uid, extra_groups=[])
        proc = subprocess.Popen(
            _bwrap_argv(python, limits.disk_mb, code_fd, mount_dir),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(code_fd,), start_new_session=True, preexec_fn=set_limits, cwd="/",
            env={"PATH": "/usr/bin:/bin"}, **kwargs,
        )
    except OSError as err:
        os.close(code_fd)
        if mount_dir:
            shutil.rmtree(mount_dir, ignore_errors=True)
        return SandboxResult(None, "", "", error=f"sandbox failed to start: {err}")
    os.close(code_fd)
    try:
        return _communicate(proc, stdin.encode("utf-8", "replace"), limits)
    finally:
        _kill_group(proc)
        if as_root:
            _kill_uid(uid)
        if mount_dir:  # the mounts lived in the run's own mount namespace: the host directories are empty
            shutil.rmtree(mount_dir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _communicate(proc: subprocess.Popen, stdin: bytes, limits) -> SandboxResult:
    deadline = time.monotonic() + limits.wall_s
    sel = selectors.DefaultSelector()
    out = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    for f in out:
        os.set_blocking(f.fileno(), False)
        sel.register(f, selectors.EVENT_READ)
    pending = memoryview(stdin)
    if pending:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    timed_out = truncated = False
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        for key, _ in sel.select(timeout=min(left, 0.5)):
            f = key.fileobj
            if f is proc.stdin:
                try:
                    n = os.write(f.fileno(), pending[:65536])
                    pending = pending[n:]
                except (BrokenPipeError, OSError):
                    pending = pending[:0]
                if not pending:
                    sel.unregister(f)
                    f.close()
                continue
            try:
                chunk = os.read(f.fileno(), 65536)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(f)
                continue
            out[f] += chunk
            if len(out[proc.stdout]) + len(out[proc.stderr]) > limits.output_bytes:
                truncated = True
                break
        if truncated:
            break
    sel.close()
    if timed_out or truncated:
        _kill_group(proc)
    else:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        try:
            f.close()
        except (OSError, ValueError):
            pass
    cap = limits.output_bytes
    return SandboxResult(
        returncode=proc.returncode if not (timed_out or truncated) else None,
        stdout=bytes(out[proc.stdout][:cap]).decode("utf-8", "replace"),
        stderr=bytes(out[proc.stderr][:cap]).decode("utf-8", "replace"),
        timed_out=timed_out,
        output_truncated=truncated,
    )

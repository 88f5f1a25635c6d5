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

Memory is one account per run: a memory cgroup of its own
(rewards.sandbox_cgroup) charged with everything the run holds, memfds, SysV
and POSIX shared memory, pipes, its tmpfs files and kernel memory included,
limited to `memory_mb + disk_mb`; its OOM killer kills only the run. Where no
memory cgroup can be made, a seccomp filter refuses the routes that no rlimit
counts (rewards.sandbox_seccomp), and a machine with neither refuses to run
(`memory_account` in rewards.config.SandboxConfig says which is required).

The sandbox's Python sees only the standard library: every site-packages and
dist-packages folder under the bound paths is hidden behind an empty
read-only mount, so neither the system's packages (`_cffi_backend`, ...) nor
the hub's own can be imported, even with sys.path edited by hand.

docs/sandbox.md has the whole threat model. Without root the uid switch is
skipped and RLIMIT_NPROC counts all of the hub user's processes, so it is set
to (current count + max_procs).
"""
from __future__ import annotations

import functools
import glob
import json
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
from dataclasses import dataclass, field
from typing import Optional

from rewards import sandbox_cgroup, sandbox_seccomp

_MiB = 1 << 20


@dataclass
class SandboxResult:
    returncode: Optional[int]
    stdout: str
    stderr: str
    timed_out: bool = False
    output_truncated: bool = False
    error: Optional[str] = None
    memory_peak_bytes: Optional[int] = None  # what the run's memory cgroup was charged at most
    oom_killed: bool = False  # the cgroup's OOM killer ended a process of the run
    memory_account: str = ""  # "cgroup-v2", "cgroup-v1" or "none" (seccomp refuses what no limit counts)

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
    bound = ["/usr/"]
    real = os.path.realpath(python)
    if not real.startswith("/usr/"):  # e.g. a pyenv build: expose only its prefix, read-only
        prefix = os.path.dirname(os.path.dirname(real))
        args += ["--ro-bind", prefix, prefix]
        bound.append(prefix.rstrip("/") + "/")
    for folder in package_dirs(python):
        if folder.startswith(tuple(bound)):  # hidden behind an empty read-only mount
            args += ["--tmpfs", folder, "--remount-ro", folder]
    return args


@functools.lru_cache(maxsize=None)
def package_dirs(python: str) -> tuple[str, ...]:
    """Every site-packages/dist-packages folder the sandbox's `python` could
    import from: what its `site` module names, and the distribution's usual
    places (Debian's /usr/lib/python3/dist-packages, /usr/local)."""
    found = set()
    try:
        out = subprocess.run(
            [python, "-I", "-c", "import json, site, sysconfig; print(json.dumps(site.getsitepackages() + "
             "[sysconfig.get_path('purelib'), sysconfig.get_path('platlib')]))"],
            capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, text=True)
        found.update(json.loads(out.stdout))
    except (OSError, subprocess.TimeoutExpired, ValueError):
        pass
    for pattern in ("/usr/lib/python3*/dist-packages", "/usr/lib/python3*/site-packages",
                    "/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages"):
        found.update(glob.glob(pattern))
    return tuple(sorted(os.path.realpath(d) for d in found if isinstance(d, str) and os.path.isdir(d)))


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


def _bwrap_argv(python: str, disk_mb: int, files: list[tuple[int, str]], command: list[str],
                mount_dir: Optional[str] = None, seccomp_fd: Optional[int] = None) -> list[str]:
    """bwrap's command line running `python *command`, with each (fd, path)
    of `files` copied in (paths outside /sandbox are read-only once made);
    with `mount_dir`, the unshare + mount prefix that gives the writable
    mounts an inode cap, and bwrap binds them."""
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
    copied = []
    for fd, path in files:
        parent = os.path.dirname(path)
        if parent not in ("/sandbox", "/"):
            copied += ["--dir", parent]
        copied += ["--file", str(fd), path]
    return [
        *prefix,
        bwrap_path() or "bwrap",
        "--unshare-user", *identity, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session",
        *(["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []),
        *_fs_args(python),
        "--proc", "/proc", "--dev", "/dev",
        *writable,
        "--dir", "/sandbox/tmp", "--symlink", "/sandbox/tmp", "/tmp",
        *copied,
        # bwrap's root and /dev are tmpfs without a size: nothing may write there
        "--remount-ro", "/dev", "--remount-ro", "/",
        "--chdir", "/sandbox",
        "--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", "/sandbox",
        "--setenv", "LANG", "C.UTF-8",
        "--", python, *command,
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


def memory_account(limits) -> tuple[str, Optional["sandbox_cgroup.Cgroups"], Optional[str]]:
    """(account name, cgroups or None, why the run cannot start or None) for
    `limits.memory_account`: a memory cgroup where one can be made, else
    (unless a cgroup is required) the seccomp fallback, which needs a filter
    for this architecture."""
    groups = sandbox_cgroup.find() if limits.memory_account != "seccomp" else None
    if groups is not None:
        account = f"cgroup-v{groups.version}"
    elif limits.memory_account == "cgroup":
        return "none", None, "sandbox unavailable: no memory cgroup can be made here (sandbox.memory_account: cgroup)"
    else:
        account = "none"
    if sandbox_seccomp.program(account) is None:
        return account, None, "sandbox unavailable: no seccomp filter for this machine's architecture"
    return account, groups, None


@dataclass
class Started:
    """A sandboxed process and what must be undone when it ends."""

    proc: subprocess.Popen
    account: str
    uid: Optional[int] = None
    mount_dir: Optional[str] = None
    group: Optional["sandbox_cgroup.RunGroup"] = None
    fds: list = field(default_factory=list)

    def stop(self, result: Optional[SandboxResult] = None) -> None:
        """Kill everything the run started, record its memory in `result`,
        and remove its cgroup and mount folder."""
        _kill_group(self.proc)
        if self.group is not None:
            self.group.kill_all()
            if result is not None:
                result.memory_peak_bytes = self.group.peak_bytes()
                result.oom_killed = self.group.oom_kills() > 0
            self.group.remove()
        if self.uid is not None:
            _kill_uid(self.uid)
        if self.mount_dir:  # the mounts lived in the run's own mount namespace: the host directories are empty
            shutil.rmtree(self.mount_dir, ignore_errors=True)
        if result is not None:
            result.memory_account = self.account


def start(files: dict[str, str], command: list[str], limits, pass_fds: tuple[int, ...] = ()):
    """Start `python *command` in a new sandbox holding `files` (sandbox path
    -> text; /sandbox/... is the program's writable folder, other paths are
    read-only), with stdin/stdout/stderr piped and `pass_fds` inherited.
    Returns a Started, or a SandboxResult carrying the error when the sandbox
    cannot start (not the program's fault)."""
    if bwrap_path() is None:
        return SandboxResult(None, "", "", error="sandbox unavailable: bubblewrap (bwrap) is not installed")
    account, groups, why = memory_account(limits)
    if why:
        return SandboxResult(None, "", "", error=why)
    python = sandbox_python(limits.python)
    as_root = os.geteuid() == 0
    uid = random.randrange(100000, 2**31 - 2) if as_root else os.getuid()
    nproc = limits.max_procs if as_root else _count_uid_procs(uid) + limits.max_procs
    fsize = limits.file_size_mb * _MiB
    mem = limits.memory_mb * _MiB
    group = None
    fds: list[int] = []
    mount_dir = None
    try:
        if groups is not None:
            group = groups.new_run((limits.memory_mb + limits.disk_mb) * _MiB)
        if inode_cap_available():  # an empty host directory to mount over, in a namespace of the run's own
            mount_dir = tempfile.mkdtemp(prefix="asymptote-sandbox-")
            os.chmod(mount_dir, 0o755)
            for sub in ("work", "shm"):
                os.mkdir(os.path.join(mount_dir, sub), 0o755)
        copied = []
        for path, text in files.items():
            fd = os.memfd_create("sandbox-file", 0)
            fds.append(fd)
            os.write(fd, text.encode("utf-8", "replace"))
            os.lseek(fd, 0, os.SEEK_SET)
            copied.append((fd, path))
        seccomp_fd = None
        bpf = sandbox_seccomp.program(account)
        if bpf:
            seccomp_fd = os.memfd_create("sandbox-seccomp", 0)
            fds.append(seccomp_fd)
            os.write(seccomp_fd, bpf)
            os.lseek(seccomp_fd, 0, os.SEEK_SET)

        def set_limits() -> None:  # in the child, before exec: join the run's cgroup as root, then drop to its uid
            if group is not None:
                group.enter()
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
            if as_root:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)

        proc = subprocess.Popen(
            _bwrap_argv(python, limits.disk_mb, copied, command, mount_dir, seccomp_fd),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(*fds, *pass_fds), start_new_session=True, preexec_fn=set_limits, cwd="/",
            env={"PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.SubprocessError) as err:
        if group is not None:
            group.remove()
        if mount_dir:
            shutil.rmtree(mount_dir, ignore_errors=True)
        return SandboxResult(None, "", "", error=f"sandbox failed to start: {err}", memory_account=account)
    finally:
        for fd in fds:
            os.close(fd)
    return Started(proc, account, uid if as_root else None, mount_dir, group)


def run_python(code: str, stdin: str = "", *, limits) -> SandboxResult:
    """Run `code` as /sandbox/main.py with `stdin`; return its outputs.

    `limits` is a rewards.config.SandboxConfig (the caller's: this module
    sits below the config, which lists the kinds that run here)."""
    started = start({"/sandbox/main.py": code}, ["-I", "-B", "/sandbox/main.py"], limits)
    if isinstance(started, SandboxResult):
        return started
    result = None
    try:
        result = _communicate(started.proc, stdin.encode("utf-8", "replace"), limits)
        return result
    finally:
        started.stop(result)


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

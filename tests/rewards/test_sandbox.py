"""Hostile programs through the real hub (kind `code`), each with an
assertion about the side effect on the host, not only about the score.

A hostile program is scored with a test that passes only if the attack
worked, so a score of 0 means the attack failed; where possible a paired
"it is invisible" check must score 1, so a 0 is not just a crash.
"""
from __future__ import annotations

import os
import socket
import time
import subprocess
import uuid

import pytest

from tests.rewards.conftest import SECRET_ENV

pytestmark = pytest.mark.skipif(
    subprocess.run(["sh", "-c", "command -v bwrap"], capture_output=True).returncode != 0,
    reason="bubblewrap not installed (apt-get install -y bubblewrap)")


def _code(program: str, tests) -> dict:
    return {"kind": "code", "response": f"Here you go:\n```python\n{program}\n```\n", "tests": tests}


def _leftovers() -> list:
    """Host processes still running a sandboxed program (after a 1 s grace)."""
    for _ in range(10):
        found = _scan()
        if not found:
            return found
        time.sleep(0.1)
    return found


def _scan() -> list:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"/sandbox/main.py" in f.read():
                        with open(f"/proc/{pid}/status") as st:
                            found.append((int(pid), [x for x in st.read().splitlines() if x.startswith(("State", "PPid", "Uid"))]))
            except OSError:
                pass
    return found


def test_honest_programs_pass(hub):
    fib = "import sys, json, collections, itertools, functools, heapq, re, math\n" \
          "sys.setrecursionlimit(5000)\n" \
          "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n" \
          "def solve(s):\n    return sum(int(x) for x in s.split())\n"
    stdio = "n = int(input())\nprint(n * 2)\n"
    r_assert, r_stdio, r_half = hub.score([
        _code(fib, ["assert depth(3000) == 3000", "assert solve('1 2 3') == 6"]),
        _code(stdio, [{"input": "2", "output": "4"}, {"input": "10\n", "output": "20\n"}]),
        _code(stdio, [{"input": "2", "output": "4"}, {"input": "3", "output": "7"}]),
    ])
    assert (r_assert.score, r_assert.details["correct"]) == (1.0, True)
    assert (r_stdio.score, r_stdio.details["passed"]) == (1.0, 2)
    assert (r_half.score, r_half.details["correct"]) == (0.5, False)


def test_secrets_are_invisible(hub, tmp_path):
    import ray

    # the secret really is in the replicas' environment ...
    assert ray.get(ray.remote(lambda: os.environ.get(SECRET_ENV)).remote())
    token = uuid.uuid4().hex
    home_secret = os.path.join(os.path.expanduser("~"), f".asymptote_secret_{token}")
    tmp_secret = f"/tmp/asymptote_secret_{token}"
    for path in (home_secret, tmp_secret):
        with open(path, "w") as f:
            f.write(token)
    try:
        steal_env, steal_home, steal_tmp, invisible = hub.score([
            _code("import os", [f"assert os.environ.get({SECRET_ENV!r})"]),
            _code("import os", [f"assert open({home_secret!r}).read() == {token!r}"]),
            _code("import os", [f"assert open({tmp_secret!r}).read() == {token!r}"]),
            _code("import os", [f"assert os.environ.get({SECRET_ENV!r}) is None",
                                f"assert not os.path.exists({home_secret!r})",
                                f"assert not os.path.exists({tmp_secret!r})",
                                "assert os.listdir('/tmp') == []",
                                "assert not os.path.exists('/work') and not os.path.exists('/root')"]),
        ])
        assert (steal_env.score, steal_home.score, steal_tmp.score) == (0.0, 0.0, 0.0)
        assert invisible.score == 1.0
    finally:
        os.remove(home_secret)
        os.remove(tmp_secret)


def test_writes_outside_the_sandbox_land_nowhere(hub):
    token = uuid.uuid4().hex
    targets = [f"/tmp/pwned_{token}", os.path.expanduser(f"~/pwned_{token}"),
               os.path.join(os.getcwd(), f"pwned_{token}")]
    program = "import os\nfor p in %r:\n    try:\n        os.makedirs(os.path.dirname(p), exist_ok=True)\n" \
              "        open(p, 'w').write('x')\n    except OSError:\n        pass\n" % (targets,)
    (r,) = hub.score([_code(program, ["print('done')"])])
    assert r.score == 1.0  # the program ran to the end ...
    assert [t for t in targets if os.path.exists(t)] == []  # ... and nothing reached the host


def test_no_network(hub):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    try:
        (r,) = hub.score([_code("import socket",
                                [f"socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')"])])
        assert r.score == 0.0
        with pytest.raises(socket.timeout):
            server.accept()  # nobody connected
    finally:
        server.close()


def test_resource_bombs_are_contained(hub):
    fork_bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    memory = "x = bytearray(4 << 30)\nprint(len(x))\n"
    disk = "with open('big', 'wb') as f:\n    for _ in range(64):\n        f.write(b'0' * (1 << 20))\n"
    flood = "while True:\n    print('y' * 10000)\n"
    sleeper = "import time\ntime.sleep(10**6)\n"
    results = hub.score([_code(p, ["print('survived')"]) for p in (fork_bomb, memory, disk, flood, sleeper)])
    assert [r.score for r in results] == [0.0] * 5
    bomb, mem, disk_r, flood_r, sleep_r = results
    assert bomb.details["timeout"] is True and sleep_r.details["timeout"] is True
    assert mem.details["timeout"] is False  # MemoryError at once, not a kill
    assert flood_r.details.get("note") == "output limit"
    assert _leftovers() == []  # no fork-bomb child or sleeper outlived its run


def test_direct_limits_report_what_happened():
    from rewards.config import SandboxConfig
    from rewards.sandbox import run_python

    limits = SandboxConfig(wall_s=3, memory_mb=256, disk_mb=8, file_size_mb=4, output_bytes=4096)
    mem = run_python("x = bytearray(1 << 30)", limits=limits)
    assert mem.returncode != 0 and "MemoryError" in mem.stderr
    disk = run_python("import os\nn = 0\ntry:\n    for i in range(100):\n        open(f'f{i}', 'wb').write(b'0' * (1 << 20))\n"
                      "        n += 1\nexcept OSError as e:\n    print(n, e.errno)\n", limits=limits)
    written, errno = map(int, disk.stdout.split())
    assert written <= 8 and errno == 28  # ENOSPC: the 8 MiB tmpfs is full
    flood = run_python("while True: print('z' * 1000)", limits=limits)
    assert flood.output_truncated and len(flood.stdout) <= 4096
    big = run_python("open('one', 'wb').write(b'0' * (6 << 20))", limits=limits)
    assert big.returncode != 0  # SIGXFSZ/EFBIG past file_size_mb


def test_every_writable_place_is_capped():
    """Try to write 64 MiB to every place a program might: only the two
    size-capped tmpfs take anything, each up to its share of disk_mb (8 MiB:
    6 for /sandbox, which holds main.py, 2 for /dev/shm); bwrap's root and /dev
    are read-only. Every writable tmpfs mount carries a size and, where
    util-linux unshare is installed, an inode cap that stops a flood of empty
    files (which cost kernel memory but no tmpfs size)."""
    from rewards.config import SandboxConfig
    from rewards.sandbox import disk_split, inode_cap_available, run_python

    assert disk_split(8) == (6 << 20, 2 << 20)
    places = ["/", "/dev", "/dev/shm", "/sandbox", "/tmp", "/var", "/etc", "/usr", "/proc", "/newdir"]
    program = "import errno, os, json\nout = {}\n" \
              f"for d in {places!r}:\n" \
              "    n, err = 0, None\n" \
              "    try:\n" \
              "        os.makedirs(d, exist_ok=True)\n" \
              "        with open(os.path.join(d, 'fill'), 'wb') as f:\n" \
              "            for _ in range(256):\n" \
              "                f.write(b'0' * (256 << 10)); f.flush(); n += 256 << 10\n" \
              "    except OSError as e:\n" \
              "        err = errno.errorcode[e.errno]\n" \
              "    out[d] = [n, err]\n" \
              "    try:\n        os.remove(os.path.join(d, 'fill'))\n    except OSError:\n        pass\n" \
              "mounts = [l.split() for l in open('/proc/self/mounts')]\n" \
              "out['uncapped'] = [m[1] for m in mounts if m[2] == 'tmpfs' and 'rw' in m[3].split(',') " \
              "and not any(o.startswith('size=') for o in m[3].split(','))]\n" \
              "out['shm'] = os.statvfs('/dev/shm').f_blocks * os.statvfs('/dev/shm').f_frsize\n" \
              "out['no_inode_cap'] = [m[1] for m in mounts if m[2] == 'tmpfs' and 'rw' in m[3].split(',') " \
              "and not any(o.startswith('nr_inodes=') for o in m[3].split(','))]\n" \
              "n = 0\ntry:\n    while n < 100000:\n        open(f'empty{n}', 'w').close(); n += 1\n" \
              "except OSError as e:\n    out['empty_files'] = [n, errno.errorcode[e.errno]]\n" \
              "print(json.dumps(out))\n"
    limits = SandboxConfig(wall_s=10, cpu_s=8, memory_mb=256, disk_mb=8, file_size_mb=64)
    run = run_python(program, limits=limits)
    import json

    out = json.loads(run.stdout)
    written = {d: out[d][0] >> 18 for d in places}  # in 256 KiB units
    errors = {d: out[d][1] for d in places}
    assert out["uncapped"] == [] and out["shm"] == 2 << 20
    # /sandbox: 6 MiB less main.py's page -> 23 full 256 KiB writes; /dev/shm: 2 MiB -> 8
    assert written == {"/": 0, "/dev": 0, "/dev/shm": 8, "/sandbox": 23, "/tmp": 23, "/var": 0, "/etc": 0,
                       "/usr": 0, "/proc": 0, "/newdir": 0}
    assert errors["/dev/shm"] == errors["/sandbox"] == errors["/tmp"] == "ENOSPC"
    assert {errors[d] for d in ("/", "/dev", "/var", "/etc", "/usr", "/newdir")} == {"EROFS"}
    if inode_cap_available():
        # one inode per 4 KiB: 1536 in /sandbox, less its root, tmp/ and main.py
        assert out["no_inode_cap"] == [] and out["empty_files"] == [1533, "ENOSPC"]


def test_daemons_and_parent_killers_die_with_the_run(hub):
    victim = subprocess.Popen(["sleep", "120"])  # a host process the program knows the pid of
    daemon = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n" \
             "        time.sleep(300)\n    os._exit(0)\nprint('parent done')\n"
    killer = f"import os, signal\nfor pid in (os.getppid(), 1, {victim.pid}, -1):\n    try:\n" \
             "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\nprint('still here')\n"
    try:
        r_daemon, r_killer = hub.score([_code(daemon, ["pass"]), _code(killer, ["pass"])])
        assert r_daemon.score == 1.0  # the program itself is fine ...
        assert _leftovers() == []  # ... but its double-forked daemon did not survive the run
        assert victim.poll() is None  # the host process is untouched
        # the replicas are alive and still scoring
        assert [r.score for r in hub.score([{"kind": "math", "response": r"\boxed{2}", "answer": "2"}] * 4)] == [1.0] * 4
    finally:
        victim.kill()
        victim.wait()


# ---- memory in one account -------------------------------------------------------
# 600 MiB that no rlimit counts: memfds filled with write() (each under the
# 16 MiB file-size limit) and SysV shared memory detached after touching it.
MEMFD = ("import os\nfds = []\nfor i in range(40):\n    fd = os.memfd_create('x')\n    fds.append(fd)\n"
         "    for j in range(15):\n        os.write(fd, b'x' * (1 << 20))\nprint('survived', 15 * len(fds))\n")
SHM = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.shmat.restype = ctypes.c_void_p\n"
       "libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]\nlibc.shmdt.argtypes = [ctypes.c_void_p]\n"
       "for i in range(60):\n    sid = libc.shmget(0, 10 << 20, 0o1000 | 0o600)\n    if sid < 0:\n"
       "        raise OSError(ctypes.get_errno(), 'shmget')\n    addr = libc.shmat(sid, None, 0)\n"
       "    ctypes.memset(addr, 1, 10 << 20)\n    libc.shmdt(ctypes.c_void_p(addr))\nprint('survived', 600)\n")
_MiB = 1 << 20


def _available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable in /proc/meminfo")


def _run_watching_memory(program: str, limits):
    """The run, and the largest drop of the host's available memory while it ran."""
    import threading

    from rewards.sandbox import run_python

    base, lows, done = _available(), [], threading.Event()

    def watch():
        while not done.is_set():
            lows.append(_available())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run = run_python(program, limits=limits)
    finally:
        done.set()
        watcher.join()
    return run, base - min(lows)


@pytest.mark.parametrize("route", ["memfd", "shm"])
@pytest.mark.parametrize("account", ["auto", "seccomp"])
def test_memory_no_rlimit_counts_is_charged_to_the_run_or_refused(account, route):
    """`auto` is this machine's mechanism (a memory cgroup per run where one can
    be made: here cgroup v1), `seccomp` the fallback every machine has. Either
    way the 600 MiB never exist: the cgroup's OOM killer stops the run at its
    limit (256 + 16 MiB), or the calls are refused at once."""
    from rewards.code import score_code
    from rewards.config import RewardsConfig, SandboxConfig
    from rewards.sandbox import memory_account

    limits = SandboxConfig(memory_mb=256, disk_mb=16, wall_s=30, cpu_s=20, memory_account=account)
    program = MEMFD if route == "memfd" else SHM
    run, drop = _run_watching_memory(program, limits)
    assert "survived" not in run.stdout and run.returncode != 0 and not run.timed_out
    assert run.memory_account == memory_account(limits)[0]
    if run.memory_account.startswith("cgroup"):
        # charged up to the limit, and no further: the kernel killed it there
        assert 200 * _MiB < run.memory_peak_bytes <= (256 + 16) * _MiB and run.oom_killed
        assert drop < 400 * _MiB  # unbounded, the host would lose the whole 600 MiB
    else:
        assert run.memory_peak_bytes is None and "PermissionError" in run.stderr  # refused, nothing allocated
        assert drop < 100 * _MiB
    cfg = RewardsConfig(timeout_s=60, sandbox=limits.model_dump())
    scored = score_code({"kind": "code", "response": f"```python\n{program}\n```",
                         "tests": [{"input": "", "output": "survived 600"}]}, cfg)
    assert (scored.score, scored.details["correct"]) == (0.0, False)


def test_the_sandboxs_python_sees_only_the_standard_library():
    """Every package folder of the sandbox's Python (the system's
    dist-packages: `_cffi_backend` and the rest) is empty inside the sandbox,
    even added to sys.path by hand; the same imports work outside it."""
    import sys

    from rewards.config import SandboxConfig
    from rewards.sandbox import package_dirs, run_python, sandbox_python

    limits = SandboxConfig(wall_s=20, cpu_s=10)
    python = sandbox_python(None)
    found = []
    for folder in package_dirs(python):
        names = sorted(n for n in os.listdir(folder) if n.isidentifier() or n.endswith((".py", ".so")))
        mods = sorted({n.split(".")[0] for n in names if n.split(".")[0].isidentifier() and not n.startswith("__")})
        found += [(folder, m) for m in mods[:5]]
    outside = [(f, m) for f, m in found if subprocess.run(
        [python, "-I", "-c", f"import sys; sys.path.insert(0, {f!r}); import {m}"], capture_output=True,
        timeout=60).returncode == 0]
    assert len(outside) >= 3, found  # e.g. /usr/lib/python3/dist-packages/_cffi_backend
    program = "import importlib, json, os, sys\nout = {}\n" \
              f"for folder, mod in {outside!r}:\n" \
              "    sys.path.insert(0, folder)\n    out[mod] = [os.listdir(folder) if os.path.isdir(folder) else None]\n" \
              "    try:\n        importlib.import_module(mod)\n        out[mod].append('imported')\n" \
              "    except ImportError:\n        out[mod].append('refused')\nprint(json.dumps(out))\n"
    run = run_python(program, limits=limits)
    import json

    assert json.loads(run.stdout) == {m: [[], "refused"] for _, m in outside}
    assert sys.version_info >= (3, 10)

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

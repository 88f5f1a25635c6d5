"""The math worker process: runs math-verify on (prediction, gold) pairs sent
by a hub replica over stdin/stdout, one result frame per item, in order.

It exists so the replica can enforce per-item limits from outside: when an
item overruns, the replica SIGKILLs this process (math-verify's SIGALRM
timeout only works on a main thread and cannot stop C code) and swaps in a
warm spare. Frames are a 4-byte big-endian length followed by a pickle; the
worker only ever unpickles what its own replica wrote.

Two requests:
- a batch, `[(idx, pred, gold), ...]`: one result frame
  `(idx, correct, error, fault)` per item, in order;
- one item alone, `("alone", idx, pred, gold, cpu_s)`, the second run of an
  item whose first check failed (the checker-failure rule, rewards.types).
  The worker lowers its own RLIMIT_CPU soft limit to its CPU time so far
  plus `cpu_s` and checks the reference alone: it parses it and compares it
  with the plain answer "0" (`CONTROL`), so a reference that hangs or breaks
  every comparison (`9^{9^{9^9}}` as the answer) is caught as the dataset's
  fault before any response is blamed. Then it sets the limit again to
  `cpu_s` past its CPU time, says `("armed", limit)` and checks the
  response. Past a limit the kernel sends SIGXCPU, whose default action ends
  the process even inside GMP; the replica reads the dead worker's CPU time
  (os.wait4) to tell that from a kill from outside. A check that returns
  restores the old limit.

`fault` is None for a verdict, "reference" for a reference answer that
cannot be parsed or checked (the dataset's fault), "check" for an exception
raised while checking the response.

Python's 4,300-digit guard on int/str conversion is lifted here, so a long
integer reference parses; the hub replica keeps it, where it guards JSON.

It runs in its own session (so the replica can kill its whole group), which
puts it outside the process group Ray kills with a dead replica. An idle
worker exits on stdin EOF when the replica is gone, but one busy on a hard
item would run on as an orphan, so it asks the kernel to SIGKILL it when its
parent dies (Linux; tied to the parent thread that started it, which for a
hub replica is one of the actor's long-lived executor threads).
"""
from __future__ import annotations

import logging
import math
import pickle
import resource
import signal
import struct
import sys
from typing import Optional

# The plain answer a reference is checked against alone, before a response is blamed.
CONTROL = "0"


def read_frame(stream):
    head = stream.read(4)
    if len(head) < 4:
        return None
    (n,) = struct.unpack(">I", head)
    return pickle.loads(stream.read(n))


def write_frame(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG(SIGKILL). A parent that died before this call left
    stdin at EOF, so the worker still exits at its first read."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def check(pred: str, gold: str) -> tuple[bool, Optional[str], Optional[str]]:
    """(correct, error, fault) of one item (fault: see the module docstring)."""
    from rewards.math import BadReference, verify_answer

    try:
        return verify_answer(pred, gold), None, None
    except BadReference as err:
        return False, str(err), "reference"
    except Exception as err:  # noqa: BLE001  (an exception checking this response: the replica decides)
        return False, f"{type(err).__name__}: {str(err)[:200]}", "check"


def arm_cpu_limit(cpu_s: float) -> tuple[tuple[int, int], int]:
    """Lower the RLIMIT_CPU soft limit to this process's CPU time so far plus
    `cpu_s`, rounded up to whole seconds (the kernel's unit). Returns the old
    limits and the new soft limit (absolute CPU seconds of this process)."""
    old = resource.getrlimit(resource.RLIMIT_CPU)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    limit = math.ceil(usage.ru_utime + usage.ru_stime + cpu_s)
    if old[1] != resource.RLIM_INFINITY:
        limit = min(limit, old[1])
    resource.setrlimit(resource.RLIMIT_CPU, (limit, old[1]))
    return old, limit


def run_alone(stdout, idx: int, pred: str, gold: str, cpu_s: float) -> None:
    from rewards.math import BadReference, verify_answer

    old, _ = arm_cpu_limit(cpu_s)  # the reference's own budget: its cost is not the response's
    try:
        verify_answer(CONTROL, gold)
    except Exception as err:  # noqa: BLE001  (BadReference, or the reference breaks a plain comparison)
        resource.setrlimit(resource.RLIMIT_CPU, old)
        reason = str(err) if isinstance(err, BadReference) else (
            f"reference answer {gold[:40]!r} cannot be checked ({type(err).__name__}: {str(err)[:100]})")
        write_frame(stdout, (idx, False, reason, "reference"))
        return
    _, limit = arm_cpu_limit(cpu_s)  # the response's budget, from here
    write_frame(stdout, ("armed", limit))
    result = check(pred, gold)
    resource.setrlimit(resource.RLIMIT_CPU, old)
    write_frame(stdout, (idx, *result))


def start_checker() -> None:
    """What every checker process (this one, rewards.fn_worker) does first:
    die with its replica, let SIGXCPU end it, keep library logging quiet."""
    die_with_parent()
    # SIGXCPU must end this process: undo an ignored or blocked SIGXCPU inherited from the replica
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGXCPU})
    logging.disable(logging.WARNING)


def main() -> int:
    start_checker()
    sys.setrecursionlimit(10000)
    sys.set_int_max_str_digits(0)
    from rewards.math import verify_answer

    verify_answer("1", "1")  # import and warm sympy before saying ready
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    write_frame(stdout, "ready")
    while True:
        request = read_frame(stdin)
        if request is None:
            return 0
        if isinstance(request, tuple) and request[0] == "alone":
            run_alone(stdout, *request[1:])
            continue
        for idx, pred, gold in request:
            write_frame(stdout, (idx, *check(pred, gold)))


if __name__ == "__main__":
    sys.exit(main())

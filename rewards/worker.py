"""The math worker process: runs math-verify on (prediction, gold) pairs sent
by a hub replica over stdin/stdout, one result frame per item, in order.

It exists so the replica can enforce per-item timeouts from outside: when an
item overruns, the replica SIGKILLs this process (math-verify's SIGALRM
timeout only works on a main thread and cannot stop C code) and swaps in a
warm spare. Frames are a 4-byte big-endian length followed by a pickle; the
worker only ever unpickles what its own replica wrote.

It runs in its own session (so the replica can kill its whole group), which
puts it outside the process group Ray kills with a dead replica. An idle
worker exits on stdin EOF when the replica is gone, but one busy on a hard
item would run on as an orphan, so it asks the kernel to SIGKILL it when its
parent dies (Linux; tied to the parent thread that started it, which for a
hub replica is one of the actor's long-lived executor threads).
"""
from __future__ import annotations

import logging
import pickle
import struct
import sys


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
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def main() -> int:
    die_with_parent()
    logging.disable(logging.WARNING)
    sys.setrecursionlimit(10000)
    from rewards.math import verify_answer

    verify_answer("1", "1")  # import and warm sympy before saying ready
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    write_frame(stdout, "ready")
    while True:
        batch = read_frame(stdin)
        if batch is None:
            return 0
        for idx, pred, gold in batch:
            try:
                write_frame(stdout, (idx, verify_answer(pred, gold), None))
            except Exception as err:  # noqa: BLE001  (a bad answer is a score of 0, not a crash)
                write_frame(stdout, (idx, False, f"{type(err).__name__}: {str(err)[:200]}"))


if __name__ == "__main__":
    sys.exit(main())

"""The math worker process: runs math-verify on (prediction, gold) pairs sent
by a hub replica over stdin/stdout, one result frame per item, in order.

It exists so the replica can enforce per-item timeouts from outside: when an
item overruns, the replica SIGKILLs this process (math-verify's SIGALRM
timeout only works on a main thread and cannot stop C code) and swaps in a
warm spare. Frames are a 4-byte big-endian length followed by a pickle; the
worker only ever unpickles what its own replica wrote.
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


def main() -> int:
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

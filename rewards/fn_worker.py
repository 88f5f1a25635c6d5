"""The function worker process: calls one reward function (a user's, or a
built-in one such as rewards.reasoning_gym) on items a hub replica sends
over stdin/stdout, so the replica can kill it from outside when an item
overruns, exactly as it does a math worker (rewards.worker: the same
frames, parent-death signal, session and CPU-limit arming).

Started as `python -m rewards.fn_worker TARGET SHAPE` (rewards.custom_call
names and calls it). Its hello is "ready", or `("error", line)` when the
target cannot be imported. Requests:
- a batch, `[(idx, item), ...]`: one frame `(idx, value, error)` per item, in
  order (value a float or None; error a line when the call raised or returned
  something that is not a reward). TRL's shape is called once for the batch,
  so an error there is every item's; each then runs again alone.
- one item alone, `("alone", idx, item, cpu_s)`: the second run of an item
  whose first failed (rewards.types). The worker lowers its CPU limit to its
  CPU time so far plus `cpu_s`, says `("armed", limit)`, calls the function
  and answers `(idx, value, error)`; past the limit the kernel's SIGXCPU ends it.
"""
from __future__ import annotations

import os
import resource
import sys

from rewards.custom_call import TargetError, call_batch, call_one, resolve
from rewards.worker import arm_cpu_limit, read_frame, start_checker, write_frame


def _line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text[:200]}"


def run_batch(stdout, fn, shape: str, request: list) -> None:
    if shape == "trl":  # one call for the batch: its failure is every item's
        try:
            values = call_batch(fn, shape, [item for _, item in request])
        except Exception as err:  # noqa: BLE001  (the function's failure is the item's, decided by the replica)
            values = [err] * len(request)
        for (idx, _), value in zip(request, values):
            write_frame(stdout, (idx, None, _line(value)) if isinstance(value, Exception) else (idx, value, None))
        return
    for idx, item in request:  # item by item, so one raising item does not fail the others
        try:
            write_frame(stdout, (idx, call_one(fn, shape, item), None))
        except Exception as err:  # noqa: BLE001
            write_frame(stdout, (idx, None, _line(err)))


def run_alone(stdout, fn, shape: str, idx: int, item: dict, cpu_s: float) -> None:
    old, limit = arm_cpu_limit(cpu_s)
    write_frame(stdout, ("armed", limit))
    try:
        frame = (idx, call_one(fn, shape, item), None)
    except Exception as err:  # noqa: BLE001
        frame = (idx, None, _line(err))
    resource.setrlimit(resource.RLIMIT_CPU, old)
    write_frame(stdout, frame)


def main(argv: list[str]) -> int:
    start_checker()
    target, shape = argv[0], (argv[1] if len(argv) > 1 and argv[1] != "auto" else None)
    # frames keep the real stdout; whatever the function prints goes to stderr (discarded)
    stdin, stdout = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        fn, shape = resolve(target, shape)
    except TargetError as err:
        write_frame(stdout, ("error", str(err)))
        return 1
    write_frame(stdout, "ready")
    while True:
        request = read_frame(stdin)
        if request is None:
            return 0
        if isinstance(request, tuple) and request[0] == "alone":
            run_alone(stdout, fn, shape, *request[1:])
        else:
            run_batch(stdout, fn, shape, request)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

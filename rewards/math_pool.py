"""How a hub replica runs `math` samples: the fast path inline
(rewards.math.prepare), the rest on math worker processes (rewards.worker)
that the replica can kill.

The workers exist because math-verify's own timeout cannot stop C code: an
item that overruns `timeout_s` has its worker SIGKILLed and replaced by a
warm spare, so one pathological expression never stalls the replica. A check
that fails (times out, raises, kills its worker) is run once more alone, on a
fresh worker, under a limit of `timeout_s` CPU seconds (the checker-failure
rule of rewards.types): failing again in a way the response decides scores 0
unmasked (`content_failure`); a failure it cannot cause is masked.
"""
from __future__ import annotations

import collections
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Iterator, Optional

from rewards import math as math_reward
from rewards.types import RewardResult, Sample, content_failure, failed

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The second, lone run of a failed math check may take this many times its CPU
# budget in wall-clock time before it is stopped and masked: only a starved
# process (a loaded machine) gets there, since SIGXCPU ends it at its budget.
RETRY_WALL_FACTOR = 20.0
# Signals that end a worker from outside (the kill of a replica, the OOM killer, a person).
_OUTSIDE = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Worker:
    """One checker process and its read buffer: a math worker (rewards.worker)
    by default, or another module speaking the same frames (`argv`, run with
    `python -m`; `paths` are put on its PYTHONPATH after the project's)."""

    def __init__(self, memory_mb: int, argv: tuple[str, ...] = ("rewards.worker",), paths: tuple[str, ...] = ()):
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        env["PYTHONPATH"] = os.pathsep.join((_ROOT, *paths))
        mem = memory_mb << 20

        def limit():
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU and crashes dump no core

        self.proc = subprocess.Popen(
            [sys.executable, "-m", *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, cwd=_ROOT, start_new_session=True, preexec_fn=limit,
        )
        self.buf = bytearray()
        self.ready = False
        self.tainted = False  # raised on a check: not fresh enough for a lone second run

    def send(self, obj) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()

    def recv(self, timeout: float):
        """Next frame, or raises TimeoutError / EOFError."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    obj = pickle.loads(bytes(self.buf[4:4 + n]))
                    del self.buf[:4 + n]
                    return obj
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise EOFError
                self.buf += chunk

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait for the worker's hello; a worker that could not start says why
        (`("error", line)`), raised here as RuntimeError with that line."""
        if not self.ready:
            hello = self.recv(timeout)
            if isinstance(hello, tuple) and hello[0] == "error":
                raise RuntimeError(hello[1])
            if hello != "ready":
                raise RuntimeError("checker worker sent a bad hello")
            self.ready = True

    def kill(self) -> None:
        if self.proc.returncode is None:  # not reaped yet, so its group id is still its own
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        self._close()

    def end(self, kill: bool) -> tuple[Optional[int], float]:
        """Reap this worker, after SIGKILL to its group when `kill` (else it
        closed its pipe and is dying: it gets 5 s). Returns its wait status
        (None if unknown) and the CPU seconds it used (os.wait4's rusage)."""
        pid, status, cpu = self.proc.pid, None, 0.0
        try:
            if not kill:
                for _ in range(50):
                    got, st, usage = os.wait4(pid, os.WNOHANG)
                    if got:
                        status, cpu = st, usage.ru_utime + usage.ru_stime
                        break
                    time.sleep(0.1)
                else:
                    kill = True
            if kill:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                _, status, usage = os.wait4(pid, 0)
                cpu = usage.ru_utime + usage.ru_stime
        except ChildProcessError:  # reaped elsewhere: status unknown
            pass
        self.proc.returncode = os.waitstatus_to_exitcode(status) if status is not None else -1
        self._close()
        return status, cpu

    def _close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


@dataclass
class Check:
    """What the math workers made of one (prediction, reference) pair."""

    correct: bool = False
    error: Optional[str] = None  # masked: a failure the response cannot cause
    timeout: bool = False
    failure: Optional[str] = None  # first run only: why it must run again, alone
    content_failure: Optional[str] = None  # the lone run failed as the response decides: a verdict of 0
    retried: bool = False
    reference_fault: bool = False  # the lone run found the reference at fault (masked, remembered)


class MathPool:
    """An active math worker plus a warm spare, so a kill costs no import."""

    def __init__(self, memory_mb: int = 4096):
        self.memory_mb = memory_mb
        self.active = Worker(memory_mb)
        self.spare = Worker(memory_mb)
        self.restarts = 0
        # references found at fault (reason, timed out): their other samples are masked without a run
        self.bad_references: collections.OrderedDict[str, tuple[str, bool]] = collections.OrderedDict()

    def _replace(self) -> None:
        self.active.kill()
        self.active, self.spare = self.spare, Worker(self.memory_mb)
        self.restarts += 1

    def verify(self, todo: list[tuple[str, str]], timeout_s: float) -> list[Check]:
        """A Check per (pred, gold): the batch runs with `timeout_s` of wall
        clock per item; each item that fails runs again alone with
        `timeout_s` CPU seconds (rewards.types, the checker-failure rule)."""
        checks = self._batch(todo, timeout_s)
        for i, c in enumerate(checks):
            gold = todo[i][1]
            if c.failure is None:
                if c.error is not None:  # the reference cannot be parsed
                    self._remember_bad(gold, c)
                continue
            known = self.bad_references.get(gold)  # found at fault by an earlier item's lone run
            checks[i] = Check(error=known[0], timeout=known[1]) if known else self._alone(*todo[i], cpu_s=timeout_s)
            if checks[i].reference_fault:
                self._remember_bad(gold, checks[i])
        return checks

    def _remember_bad(self, gold: str, check: Check) -> None:
        self.bad_references[gold] = (check.error, check.timeout)
        self.bad_references.move_to_end(gold)
        if len(self.bad_references) > 1024:
            self.bad_references.popitem(last=False)

    def _batch(self, todo: list[tuple[str, str]], timeout_s: float) -> list[Check]:
        """The first run: items in order on the active worker, `timeout_s` of
        wall clock each. A worker that overruns or dies is replaced and the
        items after its item are sent to the next one."""
        checks: list[Optional[Check]] = [None] * len(todo)
        for i, (_, gold) in enumerate(todo):
            if gold in self.bad_references:
                error, timed_out = self.bad_references[gold]
                checks[i] = Check(error=error, timeout=timed_out)
        pending = collections.deque(i for i, c in enumerate(checks) if c is None)
        while pending:
            self.active.wait_ready()
            self.active.send([(i, *todo[i]) for i in pending])
            while pending:
                i = pending.popleft()
                try:
                    _, correct, err, fault = self.active.recv(timeout_s)  # frames come in order
                except TimeoutError:
                    checks[i] = Check(failure=f"timeout after {timeout_s:g}s")
                except (EOFError, OSError):
                    checks[i] = Check(failure="math worker died")
                else:
                    if fault == "reference":
                        checks[i] = Check(error=err)
                    elif fault is not None:
                        checks[i] = Check(failure=err)
                        self.active.tainted = True
                    else:
                        checks[i] = Check(correct=bool(correct))
                    continue
                self._replace()
                break
        return checks  # type: ignore[return-value]

    def _alone(self, pred: str, gold: str, cpu_s: float) -> Check:
        """The second run of one item, alone on a worker that has failed no
        check: the reference checked alone, then the response, each stage
        limited to `cpu_s` CPU seconds (and RETRY_WALL_FACTOR times that in
        wall clock). See rewards.worker for the protocol."""
        if self.active.tainted:
            self._replace()
        worker = self.active
        worker.wait_ready()
        wall_s = RETRY_WALL_FACTOR * cpu_s
        worker.send(("alone", 0, pred, gold, cpu_s))
        limit = None  # the response stage's CPU limit (the worker's own CPU seconds), once it is armed
        try:
            frame = worker.recv(wall_s)
            if frame[0] == "armed":
                limit = frame[1]
                frame = worker.recv(wall_s)
        except TimeoutError:
            status, cpu = worker.end(kill=True)
            self._replace()
            if limit is not None and cpu >= limit:  # SIGXCPU should have come first; the budget is spent either way
                return Check(content_failure=f"the checker used its {cpu_s:g} CPU seconds", timeout=True,
                             retried=True)
            return Check(error=f"wall clock past {wall_s:g}s within the CPU budget ({cpu:.1f} CPU seconds used by "
                         "the worker: a loaded machine)", timeout=True, retried=True)
        except (EOFError, OSError):
            status, cpu = worker.end(kill=False)
            self._replace()
            return _death(status, cpu, limit, gold, cpu_s)
        _, correct, err, fault = frame
        if fault == "reference":
            return Check(error=err, retried=True, reference_fault=True)
        if fault is not None:
            worker.tainted = True
            return Check(content_failure=f"the checker raised {err}", retried=True)
        return Check(correct=bool(correct), retried=True)

    def close(self) -> None:
        self.active.kill()
        self.spare.kill()


def _death(status: Optional[int], cpu: float, limit: Optional[int], gold: str, cpu_s: float) -> Check:
    """Why a worker died during a lone run, from its wait status and CPU time;
    `limit` is None while it was still checking the reference alone."""
    if status is None:
        return Check(error="math worker died with an unknown status", retried=True)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    out_of_cpu = sig == signal.SIGXCPU or (limit is not None and cpu >= limit)
    if sig in _OUTSIDE and not out_of_cpu:
        return Check(error=f"math worker killed from outside ({signal.Signals(sig).name}) with CPU to spare "
                     f"({cpu:.1f}s used, limit {limit}s)", retried=True)
    if out_of_cpu:
        how = f"used its {cpu_s:g} CPU seconds"
    else:
        how = f"crashed ({signal.Signals(sig).name if sig is not None else f'exit code {os.WEXITSTATUS(status)}'})"
    if limit is None:  # the reference alone broke the checker: the dataset's fault
        return Check(error=f"reference answer {gold[:40]!r} cannot be checked: the checker {how} on it alone",
                     timeout=out_of_cpu, retried=True, reference_fault=True)
    return Check(content_failure=f"the checker {how}", timeout=out_of_cpu, retried=True)


def math_result(pred: str, check: Check) -> RewardResult:
    """The reward of a math sample decided by the workers."""
    if check.content_failure is not None:
        return content_failure(check.content_failure, timeout=check.timeout, extracted=pred)
    if check.error is not None:
        r = failed(check.error, timeout=check.timeout)
    else:
        r = math_reward.finish(pred, check.correct)
    r.details["extracted"] = pred
    if check.retried:
        r.details["retried"] = True
    return r


class MathRunner:
    """The `math` kind in a scorer (rewards.registry): each sample decided by
    the fast path at once, the others checked as one batch on the pool's
    workers when the scorer collects them. The pool starts on first use."""

    def __init__(self, cfg, metrics):
        self.cfg = cfg
        self.metrics = metrics
        self._pool: Optional[MathPool] = None

    @property
    def pool(self) -> MathPool:
        if self._pool is None:
            self._pool = MathPool()
        return self._pool

    def start(self, i: int, sample: Sample, pending: list) -> Optional[RewardResult]:
        decided, todo = math_reward.prepare(sample, self.cfg)
        if decided is not None:
            self.metrics.fast_path += 1
            return decided
        pending.append((i, *todo))
        return None

    def finish(self, pending: list[tuple[int, str, str]]) -> Iterator[tuple[int, RewardResult]]:
        if not pending:
            return
        checks = self.pool.verify([(pred, gold) for _, pred, gold in pending], self.cfg.timeout_s)
        for (i, pred, _), check in zip(pending, checks):
            yield i, math_result(pred, check)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

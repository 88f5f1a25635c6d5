"""The scoring engine behind one hub replica (and the offline `reward score`):
combines the configured terms, enforces per-item timeouts from outside the
code that might hang, caches by content hash and keeps metrics.

Where each kind runs:
- `format` and the math fast path (rewards.math.prepare): inline, linear-time;
- `math` slow path: a math worker process (rewards.worker) the scorer kills
  when an item overruns `timeout_s`, replacing it with a warm spare, so one
  pathological expression never stalls the replica. A check that fails
  (times out, raises, kills its worker) is run once more alone, on a fresh
  worker, under a limit of `timeout_s` CPU seconds (the checker-failure rule
  of rewards.types): failing again in a way the response decides scores 0
  unmasked (`content_failure`); a failure it cannot cause is masked;
- `code`: a small thread pool, each run inside the bubblewrap sandbox whose
  wall limit is the item's remaining budget;
- `genrm`, `grm`: the judge engines (rewards.judge), asked before the other
  kinds are scored and folded in after (rewards.judge.terms).
The group terms (DAPO overlong, Kimi length) are applied after the item terms.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

from rewards import length as length_terms
from rewards import math as math_reward
from rewards.code import score_code
from rewards.format import format_ok
from rewards.judge.config import JUDGE_KINDS
from rewards.types import RewardResult, Sample, content_failure, failed

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The second, lone run of a failed math check may take this many times its CPU
# budget in wall-clock time before it is stopped and masked: only a starved
# process (a loaded machine) gets there, since SIGXCPU ends it at its budget.
RETRY_WALL_FACTOR = 20.0
# Signals that end a worker from outside (the kill of a replica, the OOM killer, a person).
_OUTSIDE = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Worker:
    """One math worker process and its read buffer."""

    def __init__(self, memory_mb: int):
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        env["PYTHONPATH"] = _ROOT
        mem = memory_mb << 20

        def limit():
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU and crashes dump no core

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rewards.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
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
        if not self.ready:
            if self.recv(timeout) != "ready":
                raise RuntimeError("math worker sent a bad hello")
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
        self.active = _Worker(memory_mb)
        self.spare = _Worker(memory_mb)
        self.restarts = 0
        # references found at fault (reason, timed out): their other samples are masked without a run
        self.bad_references: collections.OrderedDict[str, tuple[str, bool]] = collections.OrderedDict()

    def _replace(self) -> None:
        self.active.kill()
        self.active, self.spare = self.spare, _Worker(self.memory_mb)
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


def content_key(sample: Sample) -> str:
    answer = sample.get("answer")
    if isinstance(answer, int):  # json.dumps, like str(), refuses an int of more than 4,300 digits
        answer = math_reward.reference_text(answer)
    body = json.dumps([sample.get("kind"), sample.get("response"), answer, sample.get("tests")],
                      sort_keys=True, default=str)
    return hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()


class Metrics:
    """Counts of one replica. `timeouts` and `errors` are masked failures
    (no reward); `retried` counts items whose check ran a second time, alone,
    and `content_failures` those of them scored 0 because the response broke
    its checker again (rewards.types)."""

    def __init__(self) -> None:
        self.latencies = collections.deque(maxlen=20000)
        self.items = self.timeouts = self.errors = self.cache_hits = self.fast_path = 0
        self.retried = self.content_failures = 0
        self.busy_s = 0.0
        self.lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"latencies": list(self.latencies), "items": self.items, "timeouts": self.timeouts,
                    "errors": self.errors, "cache_hits": self.cache_hits, "fast_path": self.fast_path,
                    "retried": self.retried, "content_failures": self.content_failures, "busy_s": self.busy_s}


def summarise(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge replica snapshots into the hub's metrics."""
    lat = sorted(x for s in snapshots for x in s["latencies"])

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000.0 if lat else 0.0

    out = {k: sum(s[k] for s in snapshots)
           for k in ("items", "timeouts", "errors", "cache_hits", "fast_path", "retried", "content_failures")}
    out.update(latency_ms_p50=pct(0.50), latency_ms_p95=pct(0.95), latency_ms_p99=pct(0.99),
               items_per_s=sum(s["items"] / s["busy_s"] for s in snapshots if s["busy_s"] > 0),
               replicas=len(snapshots))
    return out


class Scorer:
    """Scores samples and groups with one RewardsConfig."""

    def __init__(self, cfg, judges=None):
        """`judges`: a rewards.judge.pool.JudgePool serving the generative kinds."""
        from rewards.judge.terms import JudgeTerms

        self.cfg = cfg
        self.judge = JudgeTerms(cfg, judges)
        self._math: Optional[MathPool] = None
        self._code = ThreadPoolExecutor(cfg.sandbox.concurrency, thread_name_prefix="sandbox")
        self._cache: collections.OrderedDict[str, RewardResult] = collections.OrderedDict()
        self.metrics = Metrics()
        self._lock = threading.Lock()

    @property
    def math_pool(self) -> MathPool:
        if self._math is None:
            self._math = MathPool()
        return self._math

    def warm(self) -> None:
        self.math_pool.active.wait_ready()

    # -- item terms -------------------------------------------------------
    def score_items(self, samples: list[Any]) -> list[RewardResult]:
        with self._lock:
            t0 = time.monotonic()
            results: list[Optional[RewardResult]] = [None] * len(samples)
            done_at = [t0] * len(samples)
            keys: list[Optional[str]] = [None] * len(samples)
            kind_results: dict[int, RewardResult] = {}
            slow: list[tuple[int, str, str]] = []
            code_jobs = {}
            for i, s in enumerate(samples):
                if not isinstance(s, dict):
                    results[i] = failed("sample must be a JSON object")
                    continue
                keys[i] = content_key(s) if self.cfg.cache_size else None
                if keys[i] in self._cache:
                    self._cache.move_to_end(keys[i])
                    results[i] = _copy(self._cache[keys[i]])
                    self.metrics.cache_hits += 1
                    continue
                kind = s.get("kind")
                if kind == "math":
                    decided, todo = math_reward.prepare(s, self.cfg)
                    if decided is not None:
                        kind_results[i] = decided
                        self.metrics.fast_path += 1
                    else:
                        slow.append((i, *todo))
                elif kind == "code":
                    code_jobs[i] = self._code.submit(score_code, s, self.cfg)
                elif kind == "format":
                    kind_results[i] = self._format(s)
                elif kind in JUDGE_KINDS:  # scored by the judge terms after this batch
                    kind_results[i] = RewardResult(0.0, {"correct": None, "timeout": False})
                else:
                    results[i] = failed(f"unknown kind {kind!r} (known: code, format, genrm, grm, math)")
            for i, _ in enumerate(samples):
                if i in kind_results:
                    done_at[i] = time.monotonic()
            if slow:
                checks = self.math_pool.verify([(p, g) for _, p, g in slow], self.cfg.timeout_s)
                for (i, pred, _), check in zip(slow, checks):
                    kind_results[i] = math_result(pred, check)
                    done_at[i] = time.monotonic()
            for i, fut in code_jobs.items():
                try:
                    kind_results[i] = fut.result()
                except Exception as err:  # noqa: BLE001  (a sandbox bug scores 0, the batch goes on)
                    kind_results[i] = failed(f"code scoring failed: {type(err).__name__}: {err}")
                done_at[i] = time.monotonic()
            for i, r in kind_results.items():
                results[i] = self._combine(samples[i], r)
                if keys[i] is not None and _cacheable(r):
                    self._cache[keys[i]] = _copy(results[i])
                    if len(self._cache) > self.cfg.cache_size:
                        self._cache.popitem(last=False)
            self._record(results, done_at, t0, [results[i] for i in kind_results])
            return results  # type: ignore[return-value]

    def _format(self, s: Sample) -> RewardResult:
        response = s.get("response")
        if not isinstance(response, str):
            return failed("sample needs a string 'response'")
        return RewardResult(float(format_ok(response, self.cfg.answer_pattern)), {"correct": None, "timeout": False})

    def _combine(self, s: Sample, r: RewardResult) -> RewardResult:
        kind = s["kind"]
        terms = {kind: r.score}
        score = self.cfg.terms.get(kind, 1.0) * r.score
        if "format" in self.cfg.terms and kind != "format":
            f = self._format(s).score
            terms["format"] = f
            score += self.cfg.terms["format"] * f
        details = dict(r.details)
        details["terms"] = terms
        return RewardResult(score, details)

    def _record(self, results, done_at, t0, scored) -> None:
        """`scored`: the results checked in this call (not from the cache)."""
        now = time.monotonic()
        with self.metrics.lock:
            m = self.metrics
            m.items += len(results)
            m.busy_s += now - t0
            m.latencies.extend(t - t0 for t in done_at)
            m.timeouts += sum(1 for r in results if r.mask_reason == "timeout")
            m.errors += sum(1 for r in results if r.mask_reason == "error")
            m.retried += sum(1 for r in scored if r.details.get("retried"))
            m.content_failures += sum(1 for r in scored if r.details.get("checker_failure"))

    def _record_judged(self, pending, results: list[RewardResult]) -> None:
        """Judge failures count with the item timeouts/errors."""
        if pending is None:
            return
        failed_judge = [r for r in results if r.details.get("judge") and r.details.get("error")]
        with self.metrics.lock:
            self.metrics.timeouts += sum(1 for r in failed_judge if r.details.get("timeout"))
            self.metrics.errors += sum(1 for r in failed_judge if not r.details.get("timeout"))

    # -- group terms ------------------------------------------------------
    def score_groups(self, groups: list[list[Any]]) -> list[list[RewardResult]]:
        flat = [s for g in groups for s in g]
        pending = self.judge.submit(groups)
        scored = self.score_items(flat)
        self.judge.apply(pending, scored)
        self._record_judged(pending, scored)
        out, k = [], 0
        for g in groups:
            results = scored[k:k + len(g)]
            k += len(g)
            self._group_terms(g, results)
            out.append(results)
        return out

    def _group_terms(self, group: list[Any], results: list[RewardResult]) -> None:
        cfg = self.cfg
        lengths = [length_terms.sample_length(s) if isinstance(s, dict) else 0 for s in group]
        if cfg.overlong is not None:
            o = cfg.overlong
            for r, n in zip(results, lengths):
                if o.correct_only and r.details.get("correct") is not True:
                    p = 0.0
                else:
                    p = length_terms.overlong_penalty(n, o.max_len, o.cache_len)
                r.details.setdefault("terms", {})["overlong"] = p
                r.score += o.weight * p
        if cfg.kimi_length and results:
            lam = length_terms.kimi_length_rewards(lengths, [r.details.get("correct") for r in results])
            for r, x in zip(results, lam):
                r.details.setdefault("terms", {})["kimi_length"] = x
                r.score += cfg.kimi_length * x

    def close(self) -> None:
        if self._math is not None:
            self._math.close()
        self._code.shutdown(wait=False, cancel_futures=True)


def _cacheable(r: RewardResult) -> bool:
    """Verdicts are cached. A masked failure is not (the response did not
    cause it), nor a wall-clock timeout, which a loaded machine may have
    caused; a content failure is (its second run had a CPU-seconds limit)."""
    if r.masked:
        return False
    return not r.details.get("timeout") or bool(r.details.get("checker_failure"))


def _copy(r: RewardResult) -> RewardResult:
    details = dict(r.details)
    if "terms" in details:
        details["terms"] = dict(details["terms"])
    return RewardResult(r.score, details)

"""The scoring engine behind one hub replica (and the offline `reward score`):
combines the configured terms, enforces per-item timeouts from outside the
code that might hang, caches by content hash and keeps metrics.

Where each kind runs:
- `format` and the math fast path (rewards.math.prepare): inline, linear-time;
- `math` slow path: a math worker process (rewards.worker) the scorer kills
  when an item overruns `timeout_s`, replacing it with a warm spare, so one
  pathological expression costs one timeout and never stalls the replica;
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
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from rewards import length as length_terms
from rewards import math as math_reward
from rewards.code import score_code
from rewards.format import format_ok
from rewards.judge.config import JUDGE_KINDS
from rewards.types import RewardResult, Sample, failed

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Worker:
    """One math worker process and its read buffer."""

    def __init__(self, memory_mb: int):
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        env["PYTHONPATH"] = _ROOT
        mem = memory_mb << 20

        def limit():
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rewards.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, cwd=_ROOT, start_new_session=True, preexec_fn=limit,
        )
        self.buf = bytearray()
        self.ready = False

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
        try:
            os.killpg(self.proc.pid, 9)
        except OSError:
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class MathPool:
    """An active math worker plus a warm spare, so a kill costs no import."""

    def __init__(self, memory_mb: int = 4096):
        self.memory_mb = memory_mb
        self.active = _Worker(memory_mb)
        self.spare = _Worker(memory_mb)
        self.restarts = 0

    def _replace(self) -> None:
        self.active.kill()
        self.active, self.spare = self.spare, _Worker(self.memory_mb)
        self.restarts += 1

    def verify(self, todo: list[tuple[str, str]], timeout_s: float) -> list[tuple[bool, bool, Optional[str]]]:
        """(correct, timed_out, error) per (pred, gold), each item within timeout_s."""
        results: list[Optional[tuple[bool, bool, Optional[str]]]] = [None] * len(todo)
        start = 0
        while start < len(todo):
            self.active.wait_ready()
            self.active.send([(i, p, g) for i, (p, g) in enumerate(todo) if i >= start])
            while start < len(todo):
                try:
                    idx, correct, err = self.active.recv(timeout_s)
                except TimeoutError:
                    results[start] = (False, True, f"timeout after {timeout_s:g}s")
                except (EOFError, OSError):
                    results[start] = (False, False, "math worker died (memory or recursion limit)")
                else:
                    results[idx] = (bool(correct), False, err)
                    start = idx + 1
                    continue
                start += 1
                self._replace()
                break
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.active.kill()
        self.spare.kill()


def content_key(sample: Sample) -> str:
    body = json.dumps([sample.get("kind"), sample.get("response"), sample.get("answer"), sample.get("tests")],
                      sort_keys=True, default=str)
    return hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()


class Metrics:
    def __init__(self) -> None:
        self.latencies = collections.deque(maxlen=20000)
        self.items = self.timeouts = self.errors = self.cache_hits = self.fast_path = 0
        self.busy_s = 0.0
        self.lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"latencies": list(self.latencies), "items": self.items, "timeouts": self.timeouts,
                    "errors": self.errors, "cache_hits": self.cache_hits, "fast_path": self.fast_path,
                    "busy_s": self.busy_s}


def summarise(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge replica snapshots into the hub's metrics."""
    lat = sorted(x for s in snapshots for x in s["latencies"])

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000.0 if lat else 0.0

    out = {k: sum(s[k] for s in snapshots) for k in ("items", "timeouts", "errors", "cache_hits", "fast_path")}
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
                verdicts = self.math_pool.verify([(p, g) for _, p, g in slow], self.cfg.timeout_s)
                for (i, pred, _), (correct, timed_out, err) in zip(slow, verdicts):
                    r = math_reward.finish(pred, correct)
                    r.details["timeout"] = timed_out
                    if err:
                        r.details["error"] = err
                    kind_results[i] = r
                    done_at[i] = time.monotonic()
            for i, fut in code_jobs.items():
                try:
                    kind_results[i] = fut.result()
                except Exception as err:  # noqa: BLE001  (a sandbox bug scores 0, the batch goes on)
                    kind_results[i] = failed(f"code scoring failed: {type(err).__name__}: {err}")
                done_at[i] = time.monotonic()
            for i, r in kind_results.items():
                results[i] = self._combine(samples[i], r)
                if keys[i] is not None and not r.details.get("timeout"):
                    self._cache[keys[i]] = _copy(results[i])
                    if len(self._cache) > self.cfg.cache_size:
                        self._cache.popitem(last=False)
            self._record(results, done_at, t0)
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

    def _record(self, results, done_at, t0) -> None:
        now = time.monotonic()
        with self.metrics.lock:
            m = self.metrics
            m.items += len(results)
            m.busy_s += now - t0
            m.latencies.extend(t - t0 for t in done_at)
            m.timeouts += sum(1 for r in results if r.details.get("timeout"))
            m.errors += sum(1 for r in results if r.details.get("error") and not r.details.get("timeout"))

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


def _copy(r: RewardResult) -> RewardResult:
    details = dict(r.details)
    if "terms" in details:
        details["terms"] = dict(details["terms"])
    return RewardResult(r.score, details)

"""The scoring engine behind one hub replica (and the offline `reward score`):
hands each sample to its kind's runner (rewards.registry), combines the
configured terms, caches by content hash and keeps metrics.

The registry is the dispatch: a scorer builds one runner per registered kind
and scores through them without naming a kind (only `math_pool`, the math
runner's worker pool, is reached by name, for warm-up and tests). Where each
kind runs (rewards.registry):
- `format` and the math fast path (rewards.math.prepare): inline, linear-time;
- `math` slow path: math worker processes the scorer can kill
  (rewards.math_pool), checked as one batch after the batch's other samples
  are started;
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
import math
import os
import threading
import time
from typing import Any, Optional

from rewards import length as length_terms
from rewards import math as math_reward
from rewards.custom import FunctionRunner
from rewards.format import format_reward
from rewards.math_pool import MathPool
from rewards.registry import KINDS, Runner, unknown_kind
from rewards.types import RewardResult, Sample, failed


def content_key(sample: Sample) -> str:
    answer = sample.get("answer")
    if isinstance(answer, int):  # json.dumps, like str(), refuses an int of more than 4,300 digits
        answer = math_reward.reference_text(answer)
    body = json.dumps([sample.get("kind"), sample.get("response"), answer, sample.get("tests"),
                       sample.get("entry_point"), sample.get("test_imports"), sample.get("meta"),
                       sample.get("prompt"), sample.get("env")], sort_keys=True, default=str)
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
        self.metrics = Metrics()
        self._runners: dict[str, Runner] = {kind: make(cfg, self.metrics) for kind, make in KINDS.items()}
        for name, c in cfg.custom.items():
            # the driver's folder, then this process's PYTHONPATH (where Ray's runtime_env put the
            # shipped copy on a node without that folder: rewards.hub)
            paths = ((c.python_path,) if c.python_path else ()) + tuple(
                p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
            self._runners[name] = FunctionRunner(name, c.function, c.shape, cfg, paths)
        # custom terms listed in `terms`: scored for every sample, beside its own kind
        self._added = [name for name in cfg.custom if name in cfg.terms]
        self._cache: collections.OrderedDict[str, RewardResult] = collections.OrderedDict()
        self._lock = threading.Lock()

    @property
    def math_pool(self) -> MathPool:
        return self._runners["math"].pool

    def warm(self) -> None:
        self.math_pool.active.wait_ready()

    # -- item terms -------------------------------------------------------
    def score_items(self, samples: list[Any]) -> list[RewardResult]:
        """Each sample scored by its kind's runner: every runner is started on
        its samples first (inline kinds decide there), then each, in the
        registry's order, finishes the samples it kept."""
        with self._lock:
            t0 = time.monotonic()
            results: list[Optional[RewardResult]] = [None] * len(samples)
            done_at = [t0] * len(samples)
            keys: list[Optional[str]] = [None] * len(samples)
            kind_results: dict[int, RewardResult] = {}
            pending: dict[str, list] = {kind: [] for kind in self._runners}
            added: dict[str, list] = {name: [] for name in self._added}
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
                if not (isinstance(kind, str) and kind in self._runners):
                    results[i] = failed(unknown_kind(kind, self._runners))
                    continue
                decided = self._runners[kind].start(i, s, pending[kind])
                if decided is not None:
                    kind_results[i] = decided
                for name in self._added:
                    if name != kind:
                        self._runners[name].start(i, s, added[name])
            for i in kind_results:
                done_at[i] = time.monotonic()
            for kind, runner in self._runners.items():
                for i, r in runner.finish(pending[kind]):
                    kind_results[i] = r
                    done_at[i] = time.monotonic()
            extra: dict[int, dict[str, RewardResult]] = collections.defaultdict(dict)
            for name, kept in added.items():
                for i, r in self._runners[name].finish(kept):
                    extra[i][name] = r
                    done_at[i] = time.monotonic()
            for i, r in kind_results.items():
                results[i] = self._combine(samples[i], r, extra.get(i, {}))
                if keys[i] is not None and _cacheable(results[i]):  # an added term may have masked it
                    self._cache[keys[i]] = _copy(results[i])
                    if len(self._cache) > self.cfg.cache_size:
                        self._cache.popitem(last=False)
            self._record(results, done_at, t0, [results[i] for i in kind_results])
            return results  # type: ignore[return-value]

    def _combine(self, s: Sample, r: RewardResult, extra: dict[str, RewardResult]) -> RewardResult:
        """The sample's own kind's result with the added terms (`format`, and
        `extra`: the custom terms scored beside it). A masked added term masks
        the sample: a failure is never part of a reward."""
        kind = s["kind"]
        terms = {kind: r.score}
        score = self.cfg.terms.get(kind, 1.0) * r.score
        if "format" in self.cfg.terms and kind != "format":
            f = format_reward(s, self.cfg).score
            terms["format"] = f
            score += self.cfg.terms["format"] * f
        details = dict(r.details)
        for name, term in extra.items():
            if term.masked and not r.masked:
                details.update(error=term.details["error"], timeout=term.details.get("timeout", False))
            for key in ("checker_failure", "retried"):
                if key in term.details:
                    details.setdefault(key, term.details[key])
            terms[name] = term.score
            score += self.cfg.terms[name] * term.score
        env_terms, problem = _env_terms(s.get("env"))
        if problem is not None and not r.masked:
            details.update(error=problem, timeout=False)
        for name, value in env_terms.items():
            terms[f"env.{name}"] = value
            score += self.cfg.env_terms.get(name, 1.0) * value
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
        for runner in self._runners.values():
            runner.close()


def _env_terms(terms: Any) -> tuple[dict[str, float], Optional[str]]:
    """The terms an environment awarded (`sample["env"]`: name -> number) and,
    when one is missing (None: the environment could not score it) or is not a
    finite number, the one-line reason that masks the sample."""
    if terms is None:
        return {}, None
    if not isinstance(terms, dict):
        return {}, f"env: reward terms must be an object of name -> number, not {type(terms).__name__}"
    out = {}
    for name, value in terms.items():
        if value is None:
            return {}, f"env: the environment could not score its term {name!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return {}, f"env: term {name!r} is {value!r}, not a finite number"
        out[str(name)] = float(value)
    return out, None


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

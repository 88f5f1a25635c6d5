"""The generative terms inside a hub replica's scoring of a batch.

`JudgeTerms.submit(groups)` plans every judge request the batch needs and
sends them all before the replica scores the verifiable terms, so judging
overlaps math and code checking; `apply(...)` then waits and folds each judge
score into its sample with the term's weight. A sample is judged by its own
kind when that is a judge kind, and by every judge kind listed in `terms`.
A judge failure fails the whole sample (rewards.types.failed: the learner
masks it), keeping the verifiable terms it had in `details["terms"]`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

from rewards.judge.config import JUDGE_KINDS
from rewards.judge.kinds import Finish, judge_failure, plan_genrm, plan_grm
from rewards.types import RewardResult, Sample


@dataclass
class Pending:
    finishers: list[tuple[str, Finish, int, int]]  # kind, finish, first request, count
    calls: list
    n_requests: int
    unserved: dict[int, RewardResult]


class JudgeTerms:
    def __init__(self, cfg, pool=None):
        self.cfg = cfg
        self.pool = pool

    def kinds_for(self, sample: Any) -> list[str]:
        if not isinstance(sample, dict):
            return []
        own = sample.get("kind")
        listed = [k for k in JUDGE_KINDS if k in self.cfg.terms and k != own]
        return ([own] if own in JUDGE_KINDS else []) + listed

    def submit(self, groups: list[list[Sample]]) -> Optional[Pending]:
        by_kind: dict[str, list[list[tuple[int, Sample]]]] = {k: [] for k in JUDGE_KINDS}
        idx = 0
        for group in groups:
            members: dict[str, list[tuple[int, Sample]]] = {k: [] for k in JUDGE_KINDS}
            for s in group:
                for kind in self.kinds_for(s):
                    members[kind].append((idx, s))
                idx += 1
            for kind, m in members.items():
                if m:
                    by_kind[kind].append(m)
        if not any(by_kind.values()):
            return None
        if self.pool is None:
            unserved = {i: judge_failure(kind, "no judge engines (set rewards.judge)")
                        for kind, gs in by_kind.items() for g in gs for i, _ in g}
            return Pending([], [], 0, unserved)
        jc = self.pool.cfg
        deadline = time.time() + jc.timeout_s
        requests: list[dict] = []
        finishers = []
        for kind, gs in by_kind.items():
            if not gs:
                continue
            if kind == "genrm":
                reqs, finish = plan_genrm([x for g in gs for x in g], jc, self.pool.info, deadline)
            else:
                reqs, finish = plan_grm(gs, jc, self.pool.info, deadline)
            finishers.append((kind, finish, len(requests), len(reqs)))
            requests += reqs
        return Pending(finishers, self.pool.submit(requests), len(requests), {})

    def apply(self, pending: Optional[Pending], results: list[RewardResult]) -> None:
        """Fold the judge scores into `results` (flat, in batch order), in place."""
        if pending is None:
            return
        judged: list[tuple[str, dict[int, RewardResult]]] = [("", pending.unserved)]
        if pending.calls or pending.n_requests:
            outs = self.pool.collect(pending.calls, pending.n_requests)
            judged += [(kind, finish(outs[first:first + n])) for kind, finish, first, n in pending.finishers]
        for kind, got in judged:
            for i, jr in got.items():
                results[i] = self._fold(results[i], jr.details.get("judge", kind), jr)

    def _fold(self, r: RewardResult, kind: str, jr: RewardResult) -> RewardResult:
        if r.details.get("error"):  # already failed (this or another term): stays failed
            return r
        terms = dict(r.details.get("terms", {}))
        if jr.details.get("error"):
            out = RewardResult(0.0, dict(jr.details))
            out.details["correct"] = r.details.get("correct")
            out.details["terms"] = terms
            return out
        terms[kind] = jr.score
        details = dict(r.details, terms=terms)
        details["judge"] = "+".join(x for x in (details.get("judge"), kind) if x)
        details["judge_info"] = {**details.get("judge_info", {}), **jr.details["judge_info"]}
        return RewardResult(r.score + self.cfg.terms.get(kind, 1.0) * jr.score, details)

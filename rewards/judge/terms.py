"""The generative terms inside a hub replica's scoring of a batch.

`JudgeTerms.submit(groups)` plans every judge request the batch needs and
sends them all before the replica scores the verifiable terms, so judging
overlaps math and code checking; `apply(...)` then waits and folds each judge
score into its sample with the term's weight. A sample is judged by its own
kind when that is a judge kind, and by every judge kind listed in `terms`.

Failures follow rewards.types' one rule. A sample none of whose judgements
counted (rewards.judge.kinds: `details.failure`) is asked once more *alone*:
its own prompt (a GRM set of one), fresh seeds, a fresh deadline. Then:

- a judgement counts: that is its score;
- what the judge wrote about this response is unreadable again ("content":
  no Yes/No, no or malformed scores, cut at its token limit): the sample
  scores 0, unmasked (`rewards.types.content_failure`, `checker_failure` the
  reason), its verifiable terms and `correct` kept in `details`;
- the judge could not answer again ("engine": a timeout, an engine error or
  a dead engine, a prompt over the context): masked (`failed`), counted.

A sample that could not be asked at all ("input": no question, no engines) is
masked without a retry. `details.retried` marks every sample asked twice;
`counts()` gives this replica's retries and content failures (the engines
count the retry requests: `judge_retries` in the pool's usage).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

from rewards.judge.config import JUDGE_KINDS
from rewards.judge.kinds import Finish, judge_failure, plan_genrm, plan_grm
from rewards.types import RewardResult, Sample, content_failure


@dataclass
class Pending:
    finishers: list[tuple[str, Finish, int, int]]  # kind, finish, first request, count
    calls: list
    n_requests: int
    unserved: dict[int, RewardResult]
    samples: dict[int, Sample]  # flat index -> sample, for the retries


class JudgeTerms:
    def __init__(self, cfg, pool=None):
        self.cfg = cfg
        self.pool = pool
        self.retried = 0  # (sample, kind) pairs asked a second time
        self.content_failures = 0  # of those, scored 0 because the judge's answer was unreadable twice

    def counts(self) -> dict[str, int]:
        return {"judge_retried": self.retried, "judge_content_failures": self.content_failures}

    def kinds_for(self, sample: Any) -> list[str]:
        if not isinstance(sample, dict):
            return []
        own = sample.get("kind")
        listed = [k for k in JUDGE_KINDS if k in self.cfg.terms and k != own]
        return ([own] if own in JUDGE_KINDS else []) + listed

    def submit(self, groups: list[list[Sample]]) -> Optional[Pending]:
        by_kind: dict[str, list[list[tuple[int, Sample]]]] = {k: [] for k in JUDGE_KINDS}
        samples: dict[int, Sample] = {}
        idx = 0
        for group in groups:
            members: dict[str, list[tuple[int, Sample]]] = {k: [] for k in JUDGE_KINDS}
            for s in group:
                for kind in self.kinds_for(s):
                    members[kind].append((idx, s))
                    samples[idx] = s
                idx += 1
            for kind, m in members.items():
                if m:
                    by_kind[kind].append(m)
        if not any(by_kind.values()):
            return None
        if self.pool is None:
            unserved = {i: judge_failure(kind, "no judge engines (set rewards.judge)")
                        for kind, gs in by_kind.items() for g in gs for i, _ in g}
            return Pending([], [], 0, unserved, samples)
        requests, finishers = self._plan(by_kind, attempt=0)
        return Pending(finishers, self.pool.submit(requests), len(requests), {}, samples)

    def _plan(self, by_kind: dict[str, list[list[tuple[int, Sample]]]], attempt: int):
        jc = self.pool.cfg
        deadline = time.time() + jc.timeout_s
        requests: list[dict] = []
        finishers = []
        for kind, gs in by_kind.items():
            if not gs:
                continue
            if kind == "genrm":
                reqs, finish = plan_genrm([x for g in gs for x in g], jc, self.pool.info, deadline, attempt)
            else:
                reqs, finish = plan_grm(gs, jc, self.pool.info, deadline, attempt)
            finishers.append((kind, finish, len(requests), len(reqs)))
            requests += reqs
        return requests, finishers

    def _ask(self, requests: list[dict], finishers) -> list[tuple[str, dict[int, RewardResult]]]:
        outs = self.pool.collect(self.pool.submit(requests), len(requests))
        return [(kind, finish(outs[first:first + n])) for kind, finish, first, n in finishers]

    def apply(self, pending: Optional[Pending], results: list[RewardResult]) -> None:
        """Fold the judge scores into `results` (flat, in batch order), in place."""
        if pending is None:
            return
        judged: list[tuple[str, dict[int, RewardResult]]] = [("", pending.unserved)]
        if pending.calls or pending.n_requests:
            outs = self.pool.collect(pending.calls, pending.n_requests)
            judged += [(kind, finish(outs[first:first + n])) for kind, finish, first, n in pending.finishers]
            self._retry(judged, pending.samples)
        for kind, got in judged:
            for i, jr in got.items():
                results[i] = self._fold(results[i], jr.details.get("judge", kind), jr)

    def _retry(self, judged: list[tuple[str, dict[int, RewardResult]]], samples: dict[int, Sample]) -> None:
        """Ask every sample whose judgements all failed (content or engine) once
        more, alone; replace its result in `judged` by the rule above."""
        again: dict[str, list[list[tuple[int, Sample]]]] = {k: [] for k in JUDGE_KINDS}
        for kind, got in judged:
            for i, jr in got.items():
                if kind and jr.details.get("error") and jr.details.get("failure") in ("content", "engine"):
                    again[kind].append([(i, samples[i])])  # a group of one: its own GRM prompt
        if not any(again.values()):
            return
        self.retried += sum(len(v) for v in again.values())
        requests, finishers = self._plan(again, attempt=1)
        second = dict(self._ask(requests, finishers))
        for kind, got in judged:
            for i, jr in second.get(kind, {}).items():
                if jr.details.get("failure") == "content":
                    self.content_failures += 1
                    jr = content_failure(jr.details["error"], judge=kind)
                jr.details["retried"] = True
                got[i] = jr

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
        if jr.details.get("checker_failure"):  # a verdict of 0 for the whole sample
            out = RewardResult(0.0, dict(jr.details))
            out.details["correct"] = r.details.get("correct")
            out.details["terms"] = terms
            return out
        details = dict(r.details, terms=terms)
        details["judge"] = "+".join(x for x in (details.get("judge"), kind) if x)
        details["judge_info"] = {**details.get("judge_info", {}), **jr.details["judge_info"]}
        if jr.details.get("retried"):
            details["retried"] = True
        if r.details.get("checker_failure"):  # another judge term already scored it 0
            return RewardResult(0.0, details)
        return RewardResult(r.score + self.cfg.terms.get(kind, 1.0) * jr.score, details)

"""The two generative reward kinds: which judge requests a batch needs, and
how their answers become one RewardResult per sample.

A kind is planned in two halves so a hub replica can send every request
before it waits on any (the judge engines batch them with everything else in
flight), then score: `plan(...)` returns the requests and a `finish(outputs)`
that maps the engines' answers back to {flat sample index: RewardResult}.
The RewardResult's score is the kind's unweighted reward in [0, 1]; a sample
whose judge could not give one is `rewards.types.failed(reason, timeout=...)`
with `details["judge"]` = the kind and `details["failure"]` = why, in the
terms of rewards.types' rule for checker failures:

- "content": at least one judgement came back and what the judge wrote about
  this response could not be read (no Yes/No, no or malformed scores, cut at
  its token limit); rewards.judge.terms asks once more alone, and a second
  such failure is a verdict of 0 (`content_failure`);
- "engine": none came back readable for a reason the response cannot cause
  (a timeout, an engine error or a dead engine, a prompt over the context,
  no log-probs); asked once more alone, then masked;
- "input": no request could be sent (no question, a judge whose tokenizer
  cannot give P(Yes)); masked without a retry.

- `genrm`: one verification per response (V text verdicts with log-probs off).
- `grm`: a group's responses in sets of `responses_per_prompt`, each set
  judged k times, each time in a seeded shuffled order.

`attempt` (0 first, 1 for the retry) enters every seed, so a retry draws
fresh judgements; attempt 0's seeds are those of a plan without it.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any, Callable, Optional

from rewards.judge import aggregate, parse
from rewards.judge.config import JUDGE_KINDS, JudgeConfig  # noqa: F401  (JUDGE_KINDS re-exported)
from rewards.judge_format import grm_prompt, verify_prompt
from rewards.types import RewardResult, Sample, failed

Finish = Callable[[list[dict]], dict[int, RewardResult]]


def judge_failure(kind: str, reason: str, timeout: bool = False, failure: str = "input") -> RewardResult:
    r = failed(reason, timeout=timeout)
    r.details["judge"] = kind
    r.details["failure"] = failure
    return r


def _seed(*parts: Any) -> int:
    digest = hashlib.sha256(repr(parts).encode("utf-8", "replace")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def question_of(sample: Sample) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(question, response, None) or (None, None, reason). A prompt given as
    chat messages asks the last user turn's content."""
    q = sample.get("prompt", sample.get("question"))
    if isinstance(q, list):
        users = [m.get("content") for m in q if isinstance(m, dict) and m.get("role") == "user"]
        q = users[-1] if users else None
    if not isinstance(q, str):
        return None, None, "judge kinds need the sample's question as a string 'prompt'"
    r = sample.get("response")
    if not isinstance(r, str):
        return None, None, "sample needs a string 'response'"
    return q, r, None


def _request(prompt: str, max_tokens: int, temperature: float, seed: int, deadline: float, attempt: int,
             **extra) -> dict:
    if attempt:
        extra["retry"] = True  # counted by the engine (judge_retries)
    return dict(prompt=prompt, max_tokens=max_tokens, temperature=temperature, seed=seed, deadline=deadline,
                **extra)


def _attempt(attempt: int) -> tuple:
    """The seed parts of an attempt: none for the first, so its seeds are unchanged."""
    return ("retry", attempt) if attempt else ()


# (reason, timed out, content: the judge wrote something unreadable about this response)
Reason = tuple[str, bool, bool]


def _engine_reason(out: dict) -> Reason:
    return out["error"], bool(out.get("timeout")), False


def _failure_of(kind: str, reasons: list[Reason]) -> RewardResult:
    """The failure of a sample none of whose judgements counted: "content"
    when any judgement came back unreadable (its reason is the one given),
    else "engine"; a timeout only when every one timed out."""
    timeout = all(t for _, t, _ in reasons)
    content = [why for why, _, c in reasons if c]
    if content:
        return judge_failure(kind, content[0], timeout=False, failure="content")
    return judge_failure(kind, reasons[0][0], timeout=timeout, failure="engine")


def plan_genrm(items: list[tuple[int, Sample]], cfg: JudgeConfig, info: dict,
               deadline: float, attempt: int = 0) -> tuple[list[dict], Finish]:
    g = cfg.genrm
    requests: list[dict] = []
    owners: list[int] = []  # flat index of each request
    early: dict[int, RewardResult] = {}
    for idx, s in items:
        q, r, why = question_of(s)
        if why:
            early[idx] = judge_failure("genrm", why)
            continue
        prompt = verify_prompt(q, r, cfg.max_response_chars)
        if g.logprobs:
            if info.get("yes_no_ids") is None:
                early[idx] = judge_failure("genrm", f"genrm logprobs: {info.get('yes_no_error')}")
                continue
            requests.append(_request(prompt, 1, 1.0, _seed(cfg.seed, prompt, *_attempt(attempt)), deadline,
                                     attempt, token_ids=list(info["yes_no_ids"])))
            owners.append(idx)
        else:
            for v in range(g.verifications):
                requests.append(_request(prompt, 4, g.temperature, _seed(cfg.seed, v, prompt, *_attempt(attempt)),
                                         deadline, attempt))
                owners.append(idx)

    def finish(outs: list[dict]) -> dict[int, RewardResult]:
        results = dict(early)
        by_idx: dict[int, list[dict]] = {}
        for idx, out in zip(owners, outs):
            by_idx.setdefault(idx, []).append(out)
        for idx, got in by_idx.items():
            values, reasons = [], []
            for out in got:
                if "error" in out:
                    reasons.append(_engine_reason(out))
                elif g.logprobs:
                    yes, no = info["yes_no_ids"]
                    lps = out.get("token_logprobs") or {}
                    if yes in lps and no in lps:
                        values.append(aggregate.p_yes(lps[yes], lps[no], g.normalise))
                    else:
                        reasons.append(("judge engine returned no log-probs for the Yes/No tokens", False, False))
                else:
                    v, why = parse.verdict(out["text"])
                    if why:
                        reasons.append((why, False, True))
                    else:
                        values.append(float(v))
            if not values:
                results[idx] = _failure_of("genrm", reasons)
                continue
            score = aggregate.mean(values)
            results[idx] = RewardResult(score, {"correct": None, "timeout": False, "judge_info": {
                "genrm": {"p_yes": score, "verifications": len(values), "failed": len(reasons)}}})
        return results

    return requests, finish


def plan_grm(groups: list[list[tuple[int, Sample]]], cfg: JudgeConfig, info: dict,
             deadline: float, attempt: int = 0) -> tuple[list[dict], Finish]:
    g = cfg.grm
    requests: list[dict] = []
    sets: list[tuple[list[int], list[list[int]], int]] = []  # (flat indices, perms, first request)
    early: dict[int, RewardResult] = {}
    for group in groups:
        ok: list[tuple[int, str, str]] = []
        for idx, s in group:
            q, r, why = question_of(s)
            if why:
                early[idx] = judge_failure("grm", why)
            else:
                ok.append((idx, q, r))
        for start in range(0, len(ok), g.responses_per_prompt):
            chunk = ok[start:start + g.responses_per_prompt]
            question, responses = chunk[0][1], [r for _, _, r in chunk]
            perms = []
            first = len(requests)
            for j in range(g.k):
                rng = random.Random(_seed(cfg.seed, j, question, responses, *_attempt(attempt)))
                perm = list(range(len(chunk)))
                rng.shuffle(perm)
                perms.append(perm)
                prompt = grm_prompt(question, [responses[p] for p in perm], cfg.max_response_chars)
                requests.append(_request(prompt, g.max_tokens,
                                         g.temperature, rng.randrange(1 << 31), deadline, attempt,
                                         logprobs=g.meta_rm == "logprob"))
            sets.append(([idx for idx, _, _ in chunk], perms, first))

    def finish(outs: list[dict]) -> dict[int, RewardResult]:
        results = dict(early)
        for indices, perms, first in sets:
            valid, quality, reasons = [], [], []
            for j, perm in enumerate(perms):
                out = outs[first + j]
                if "error" in out:
                    reasons.append(_engine_reason(out))
                    continue
                scores, why = parse.grm_scores(out["text"], len(perm), out.get("finish_reason", "stop"))
                if why:
                    reasons.append((why, False, True))
                    continue
                valid.append(aggregate.unshuffle(scores, perm))
                quality.append(out.get("mean_logprob") or 0.0)
            if not valid:
                for idx in indices:
                    results[idx] = _failure_of("grm", reasons)
                continue
            keep = aggregate.meta_keep(g.k) if g.meta_rm == "logprob" else None
            totals, kept = aggregate.vote(valid, quality, keep)
            for pos, idx in enumerate(indices):
                results[idx] = RewardResult(aggregate.grm_reward(totals[pos], kept), {
                    "correct": None, "timeout": False, "judge_info": {"grm": {
                        "votes": totals[pos], "kept": kept, "valid": len(valid), "failed": len(reasons)}}})
        return results

    return requests, finish

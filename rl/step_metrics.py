"""What one training step or evaluation logs about its data and samples
(pure functions of the rollout batch; the controller adds timings, the
learner its own `train/*` and `mismatch/*`).

A sample whose reward failed (`Sample.reward_masked`) is counted, never
scored: rewards and pass rates are over the scored samples, and `reward/*`
counts the failures, in all and per reward kind (the prompt row's `kind`).
An evaluation's pass rate is the mean over prompts of each prompt's pass rate
among its scored samples; with nothing masked that is correct / (prompts x k)
as before, and evals.jsonl's `correct` (rescaled to k) gives the same number
to the fit (rl.monitor.fit_noise reads correct / k).
"""
from __future__ import annotations

from rewards.judge.config import JUDGE_KINDS
from rl.algo.batch import informative
from rollout.types import Group, RolloutBatch


def data_metrics(rollout: RolloutBatch, batch, sampler) -> dict:
    """The data frontier: which prompts reached this training step (their
    uids), how many the batch filter dropped, how many were drawn so far."""
    uids = [g.prompt.get("uid") for g in rollout.groups]
    n = len(rollout.groups[0].samples) if rollout.groups else 1
    trained = 0 if batch is None else int(batch.advantages_b.numel()) // max(1, n)
    out = {"data/prompt_uids": uids, "data/prompts_trained": trained,
           "data/prompts_filtered": len(uids) - trained, "data/prompts_drawn": sampler.drawn}
    pool = getattr(sampler, "metrics", None)
    return out | (pool() if pool is not None else {})


def rollout_metrics(batch: RolloutBatch, step: int, k: int) -> dict:
    samples = batch.samples
    if not samples:
        return {}
    rewards = [s.reward for s in samples if s.scored]
    lengths = [len(s.token_ids) for s in samples]
    correct = [bool(s.correct) for s in samples if s.scored]
    # staleness of what trains: a carried partial sample's older segments are masked out
    stale = [step - s.trainable_min_version for s in samples if s.trainable_min_version >= 0]
    kept = sum(1 for g in batch.groups if informative(g))
    return {
        "rollout/reward_mean": sum(rewards) / max(1, len(rewards)),
        "rollout/pass_rate": sum(correct) / max(1, len(correct)),
        "rollout/length_mean": sum(lengths) / len(lengths),
        "rollout/length_max": max(lengths),
        "rollout/truncation_rate": sum(s.finish_reason == "length" for s in samples) / len(samples),
        "rollout/interrupted_rate": sum(s.interrupted for s in samples) / len(samples),
        "rollout/groups_kept": kept / max(1, len(batch.groups)),
        "rollout/samples": len(samples),
        "pipeline/staleness_max": max(stale, default=0),
        "pipeline/staleness_mean": sum(stale) / max(1, len(stale)),
        "pipeline/max_off_policy_steps": k,
        "time/generate": batch.gen_seconds,
        **reward_failures(batch.groups),
        **judge_agreement(batch.groups),
        **episode_metrics(samples),
    }


def episode_metrics(samples: list) -> dict:
    """Multi-turn samples (rollout/env.py): turns, tool use, environment
    failures and restarted episodes per sample; nothing for single-turn rollouts."""
    eps = [s.episode for s in samples if s.episode is not None]
    if not eps:
        return {}
    n = len(eps)
    return {
        "env/turns_mean": sum(e.turns for e in eps) / n,
        "env/tool_calls_mean": sum(e.tool_calls for e in eps) / n,
        "env/tool_call_rate": sum(e.tool_calls > 0 for e in eps) / n,
        "env/tool_errors": sum(e.tool_errors for e in eps),
        "env/observation_tokens_mean": sum(e.observation_tokens for e in eps) / n,
        "env/failed": sum(e.failed is not None for e in eps),
        "env/restarts": sum(e.restarts for e in eps),
    }


def reward_failures(groups: list[Group]) -> dict:
    """`reward/masked`, `reward/errors`, `reward/timeouts` and `reward/masked_fraction`
    over these groups' samples, and the same per reward kind (`reward/<kind>/...`).

    A sample belongs to its row's kind and to each judge kind that scored it
    (`details.judge`, "genrm+grm" when both did, rewards.judge); a failure counts
    under the kind that failed: the judge's when a judge failed, else the row's."""
    counts: dict[str, dict[str, int]] = {}
    for g in groups:
        row_kind = str(g.prompt.get("kind", "math"))
        for s in g.samples:
            judges = [k for k in str(s.reward_details.get("judge") or "").split("+") if k]
            failed_kind = (judges[-1] if judges and not s.scored else row_kind)
            for kind in dict.fromkeys(["", row_kind + "/", *(k + "/" for k in judges)]):
                c = counts.setdefault(kind, _zero())
                c["samples"] += 1
                if not s.scored and kind in ("", failed_kind + "/"):
                    c["masked"] += 1
                    c["timeouts" if s.reward_masked == "timeout" else "errors"] += 1
    out = {}
    for prefix, c in counts.items():
        out.update({f"reward/{prefix}{k}": c[k] for k in ("masked", "errors", "timeouts")})
        out[f"reward/{prefix}masked_fraction"] = c["masked"] / max(1, c["samples"])
    return out


def judge_agreement(groups: list[Group]) -> dict:
    """How a judge's scores sit against the verifier, per judge kind, over the
    scored samples the verifier also checked (`details.correct` a bool):
    `reward/<judge>/score_right` and `score_wrong` (its mean score where the
    verifier says right / wrong but an answer was given), `score_no_answer`
    (where no answer could be read: the judge-fooling responses, a lone ":",
    "Let me solve this step by step.", a cut-off text), `no_answer_rate` (their
    share of the samples) and `fooled_rate` (share of the verifier-wrong
    samples the judge scored above 0.5)."""
    acc: dict[str, dict[str, list[float]]] = {}
    for g in groups:
        for s in g.samples:
            d = s.reward_details or {}
            terms, correct = d.get("terms") or {}, d.get("correct")
            if not s.scored or not isinstance(correct, bool):
                continue
            for kind in JUDGE_KINDS:
                if kind not in terms:
                    continue
                a = acc.setdefault(kind, {"right": [], "wrong": [], "no_answer": []})
                cat = "right" if correct else ("wrong" if d.get("extracted") is not None else "no_answer")
                a[cat].append(float(terms[kind]))
    out = {}
    for kind, a in acc.items():
        wrong = a["wrong"] + a["no_answer"]
        for cat in ("right", "wrong", "no_answer"):
            if a[cat]:
                out[f"reward/{kind}/score_{cat}"] = sum(a[cat]) / len(a[cat])
        out[f"reward/{kind}/no_answer_rate"] = len(a["no_answer"]) / (len(a["right"]) + len(wrong))
        if wrong:
            out[f"reward/{kind}/fooled_rate"] = sum(v > 0.5 for v in wrong) / len(wrong)
    return out


def reward_warnings(metrics: dict, samples: int, mask_warn: float | None, trained: bool) -> list[str]:
    """Console lines for a step's logged `reward/*` counts: many samples
    masked (above `monitor.mask_warn`), and a step that trained nothing
    (every group masked, short of two scored samples, or scored all alike)."""
    out, step, masked = [], metrics["step"], metrics.get("reward/masked", 0)
    frac = metrics.get("reward/masked_fraction", 0.0)
    if mask_warn is not None and frac > mask_warn:
        out.append(f"warning: step {step}: {masked} of {samples} samples have no reward "
                   f"({metrics.get('reward/errors', 0)} errors, {metrics.get('reward/timeouts', 0)} timeouts; "
                   f"above monitor.mask_warn={mask_warn:.0%}); they are masked out of the loss")
    if not trained:
        why = (f"all {samples} samples had no reward (masked)" if samples and masked == samples
               else "no group had two scored samples with different rewards")
        out.append(f"warning: step {step} trained nothing: {why}; the policy version advances without an update")
    return out


def _zero() -> dict[str, int]:
    return {"samples": 0, "masked": 0, "errors": 0, "timeouts": 0}


def eval_counts(batch: RolloutBatch) -> dict:
    """Per-prompt results of an evaluation (k samples per prompt), over scored
    samples: `scored` and raw `correct_scored` per prompt, `correct` rescaled to
    k (k * correct / scored: the raw count when nothing is masked), `pass_rate`
    (the mean of correct / k; None when no prompt has a scored sample: an
    evaluation whose rewards all failed measures nothing), and `masked`
    samples. A prompt with no scored sample is left out (`prompts_unscored`).
    With an environment, `tool_calls`: per prompt (all of them, in order),
    the samples that called a tool."""
    scored, right, rates, correct = [], [], [], []
    for g in batch.groups:
        k, n = len(g.samples), sum(s.scored for s in g.samples)
        if n:
            c = sum(bool(s.correct) for s in g.samples if s.scored)
            scored.append(n)
            right.append(c)
            correct.append(c if n == k else k * c / n)
            rates.append(c / n)
    out = {"pass_rate": sum(rates) / len(rates) if rates else None, "correct": correct,
           "scored": scored, "correct_scored": right, "masked": sum(not s.scored for s in batch.samples),
           "prompts_unscored": len(batch.groups) - len(scored)}
    if any(s.episode is not None for s in batch.samples):  # multi-turn: samples that called a tool, per prompt
        out["tool_calls"] = [sum(bool(s.episode and s.episode.tool_calls) for s in g.samples) for g in batch.groups]
    return out


def eval_metrics(batch: RolloutBatch, counts: dict | None = None) -> dict:
    """The evaluation's metrics; `counts` is `eval_counts(batch)` when the
    caller has it already."""
    samples = batch.samples
    counts = counts if counts is not None else eval_counts(batch)
    per_prompt = [any(bool(s.correct) for s in g.samples if s.scored) for g in batch.groups
                  if any(s.scored for s in g.samples)]
    rates = {} if counts["pass_rate"] is None else {  # nothing scored: no pass rate, not 0
        "eval/pass_rate": counts["pass_rate"], "eval/pass_at_k": sum(per_prompt) / len(per_prompt)}
    return {
        **rates,
        "eval/length_mean": sum(len(s.token_ids) for s in samples) / max(1, len(samples)),
        "eval/truncation_rate": sum(s.finish_reason == "length" for s in samples) / max(1, len(samples)),
        "eval/prompts": len(batch.groups),
        "eval/masked": counts["masked"],
        "eval/prompts_unscored": counts["prompts_unscored"],
        **{f"eval/{name}": value for name, value in episode_metrics(samples).items()},  # eval/env/...
    }

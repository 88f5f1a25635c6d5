"""Compute spent judging (generative rewards), as the ledger's own columns,
and the GenRM paper's accounting beside them.

The hub's judge engines count cumulative usage since they started; the
hub handle's `judge_usage()` reports it as `judge_*` keys (rewards.judge.pool).
A run without judge kinds has none of them, and every column here stays 0.

    judge_core_seconds       core-seconds (CPU) or device-seconds the judge engines used
    judge_prompt_tokens      tokens the judge read (prompts: the question and the solution)
    judge_generated_tokens   tokens the judge wrote (its verdicts)
    judge_requests           judge calls sent (verifications, failed ones included: they cost too)

These are a breakdown, not an addition to `device_seconds`: the ledger's
device time is what the hub handle's `cpu_seconds()` reports for the reward
side, with or without the judge engines (rewards.hub says which).

The GenRM paper (Singhi et al. 2025, "When To Solve, When To Verify",
arXiv 2504.01005) prices a run that samples
solutions and verifies each V times as

    C = S * (1 + lambda * V)        lambda = T_verify / T_solve

with, here, in solver-token units: S = solver tokens generated
(`compute/gen_tokens`), V = verifications per solution (judge_requests /
samples scored), T_verify = judge tokens written per verification, T_solve =
solver tokens per solution (S / samples). Measured on the same samples,
S * lambda * V is the judge's generated tokens, so C = S + judge tokens: the
paper counts a judge token at the price of a solver token and leaves out the
judge's prompt (prefill) tokens. `genrm_paper_compute` reports C next to the
ledger's measured judge_core_seconds and judge_prompt_tokens, which show
what that accounting leaves out. (Under dynamic sampling, S counts the
tokens of dropped groups, whose samples were scored too but are not in the
step's sample count: lambda and V each drift, their product does not.)
"""
from __future__ import annotations

from typing import Any, Mapping

JUDGE_FIELDS = ("judge_core_seconds", "judge_prompt_tokens", "judge_generated_tokens", "judge_requests")


class JudgeMeter:
    """Per-step judge usage from the hub's cumulative counters. A counter that
    goes down (a restarted judge engine starts from zero) counts from zero."""

    def __init__(self) -> None:
        self._last = dict.fromkeys(JUDGE_FIELDS, 0.0)

    def spent(self, hub_metrics: Mapping[str, Any]) -> dict[str, float]:
        """What was used since the last call (0 for keys the hub does not report)."""
        out = {}
        for k in JUDGE_FIELDS:
            now = float(hub_metrics.get(k, 0.0) or 0.0)
            out[k] = now - self._last[k] if now >= self._last[k] else now
            self._last[k] = now
        return out


def genrm_columns(t: Mapping[str, float]) -> dict[str, float]:
    """The ledger's judge totals and the GenRM paper's C = S (1 + lambda V)
    (module docstring) from the ledger's running totals `t`."""
    s, samples = t.get("gen_tokens", 0.0), t.get("gen_samples", 0.0)
    requests, judge_tokens = t.get("judge_requests", 0.0), t.get("judge_generated_tokens", 0.0)
    v = requests / samples if samples else 0.0
    t_solve = s / samples if samples else 0.0
    t_verify = judge_tokens / requests if requests else 0.0
    lam = t_verify / t_solve if t_solve else 0.0
    return {
        "compute/judge_core_seconds": t.get("judge_core_seconds", 0.0),
        "compute/judge_prompt_tokens": int(t.get("judge_prompt_tokens", 0.0)),
        "compute/judge_tokens": int(judge_tokens),
        "compute/judge_requests": int(requests),
        "compute/genrm_lambda": lam,
        "compute/genrm_verifications": v,
        "compute/genrm_paper_compute": s * (1.0 + lam * v),
    }

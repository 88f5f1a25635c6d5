"""Turning judgements into rewards: pure functions, tested against hand values.

- GRM voting (DeepSeek-GRM): each valid judgement's scores are mapped back
  from the shuffled order it saw, then summed per response; an optional
  meta-RM step first keeps the `k // 2` (at least 1) judgements of highest
  quality. The reward is the sum over the kept judgements / (SCORE_MAX * kept),
  in [0.1, 1].
- GenRM: P(Yes) from the verdict tokens' log-probs, either renormalised over
  the two tokens or the raw vocabulary softmax, and the mean over V.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from rewards.judge_format import SCORE_MAX


def unshuffle(scores_shown: Sequence[int], perm: Sequence[int]) -> list[int]:
    """Scores in the original order: the response shown at position i was
    original response `perm[i]`."""
    out = [0] * len(perm)
    for shown, original in enumerate(perm):
        out[original] = scores_shown[shown]
    return out


def meta_keep(k: int) -> int:
    """Judgements the meta-RM step keeps out of k sampled: k // 2, at least 1."""
    return max(1, k // 2)


def vote(judgements: Sequence[Sequence[int]], quality: Optional[Sequence[float]] = None,
         keep: Optional[int] = None) -> tuple[list[int], int]:
    """(per-response score sums, judgements used). `judgements` are valid
    score lists in the original response order. With `keep`, only the `keep`
    judgements of highest `quality` vote (ties keep the earlier one)."""
    if not judgements:
        raise ValueError("vote needs at least one judgement")
    chosen = list(range(len(judgements)))
    if keep is not None and keep < len(judgements):
        if quality is None or len(quality) != len(judgements):
            raise ValueError("meta-RM selection needs one quality per judgement")
        chosen = sorted(chosen, key=lambda j: (-quality[j], j))[:keep]
    n = len(judgements[0])
    totals = [sum(judgements[j][i] for j in chosen) for i in range(n)]
    return totals, len(chosen)


def grm_reward(total: int, kept: int) -> float:
    """Normalised GRM reward: the voted sum over its maximum."""
    return total / (SCORE_MAX * kept)


def p_yes(logprob_yes: float, logprob_no: float, normalise: bool = True) -> float:
    """P(Yes) from the two verdict tokens' log-probs (T=1). `normalise`:
    exp(lp_yes) / (exp(lp_yes) + exp(lp_no)), i.e. the probability of Yes
    given the judge says Yes or No; else exp(lp_yes), the full-vocabulary
    probability (mass on other tokens counts against the response)."""
    if not normalise:
        return math.exp(logprob_yes)
    m = max(logprob_yes, logprob_no)
    if m == -math.inf:
        return 0.0
    a, b = math.exp(logprob_yes - m), math.exp(logprob_no - m)
    return a / (a + b)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)

"""Length terms, computed over a whole group (all samples of one prompt).

- DAPO soft overlong penalty: clip((L_max - L) / L_cache - 1, -1, 0); with
  `correct_only` it applies to correct traces only (ScaleRL's variant).
- Kimi k1.5 length reward: lam_i = 0.5 - (L_i - L_min) / (L_max - L_min);
  a correct answer gets lam_i, any other min(0, lam_i); all equal -> 0.

L is `sample["length"]` (response tokens) when present, else len(response).
"""
from __future__ import annotations

from rewards.types import Sample


def sample_length(sample: Sample) -> int:
    length = sample.get("length")
    if isinstance(length, int) and not isinstance(length, bool) and length >= 0:
        return length
    response = sample.get("response")
    return len(response) if isinstance(response, str) else 0


def overlong_penalty(length: int, max_len: int, cache_len: int) -> float:
    return min(0.0, max(-1.0, (max_len - length) / cache_len - 1.0))


def kimi_length_rewards(lengths: list[int], correct: list[bool | None]) -> list[float]:
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    out = []
    for length, ok in zip(lengths, correct):
        lam = 0.5 - (length - lo) / (hi - lo)
        out.append(lam if ok is True else min(0.0, lam))
    return out

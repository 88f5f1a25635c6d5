"""Reading judge completions: a value, or the reason there is none.

rewards.judge_format owns the format (and its parsers, which say only
"None"); this module adds the reason a failed sample carries, so a masked
sample says whether its judge wrote no scores, the wrong count, a score out of
range, or was cut off by its token limit.
"""
from __future__ import annotations

import re
from typing import Optional

from rewards.judge_format import SCORE_MAX, SCORE_MIN, parse_grm_scores, parse_verdict

_BOXED_AFTER_SCORES = re.compile(r"Scores:\s*\\boxed\{([^{}]*)\}")


def grm_scores(text: str, n: int, finish_reason: str = "stop") -> tuple[Optional[list[int]], Optional[str]]:
    """(scores, None) for a well-formed judgement of `n` responses, else
    (None, reason)."""
    scores = parse_grm_scores(text, n)
    if scores is not None:
        return scores, None
    found = _BOXED_AFTER_SCORES.findall(text)
    if not found:
        if finish_reason == "length":
            return None, "judge output truncated at its token limit before 'Scores: \\boxed{}'"
        return None, "judge output has no 'Scores: \\boxed{...}'"
    parts = [p.strip() for p in found[-1].split(",")]
    if len(parts) != n:
        return None, f"judge gave {len(parts)} scores for {n} responses"
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        return None, f"judge scores are not integers: {found[-1][:40]!r}"
    return None, f"judge score outside [{SCORE_MIN}, {SCORE_MAX}]: {found[-1][:40]!r}"


def verdict(text: str) -> tuple[Optional[bool], Optional[str]]:
    """(True/False, None) for a completion opening with Yes/No, else (None, reason)."""
    v = parse_verdict(text)
    if v is None:
        return None, f"judge verdict is neither Yes nor No: {text[:40]!r}"
    return v, None

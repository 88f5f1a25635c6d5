"""Reading judge completions: a value, or the reason there is none.

rewards.judge_format owns the format (and its parsers, which say only
"None"); this module adds the reason a failed sample carries, so a sample
says whether its judge wrote no scores, the wrong count, a score out of
range, or was cut off by its token limit. Every reason here is about what
the judge wrote (a content failure in rewards.types' rule). Linear time in
the completion, like the parsers it wraps: one pass finds the last
"Scores: \\boxed{...}", and the reason is read from that box alone.
"""
from __future__ import annotations

from typing import Optional

from rewards.judge_format import SCORE_MAX, SCORE_MIN, last_scores_box, parse_verdict, scores_in_box


def grm_scores(text: str, n: int, finish_reason: str = "stop") -> tuple[Optional[list[int]], Optional[str]]:
    """(scores, None) for a well-formed judgement of `n` responses, else
    (None, reason)."""
    box = last_scores_box(text)
    if box is None:
        if finish_reason == "length":
            return None, "judge output truncated at its token limit before 'Scores: \\boxed{}'"
        return None, "judge output has no 'Scores: \\boxed{...}'"
    scores = scores_in_box(box, n)
    if scores is not None:
        return scores, None
    count = box.count(",") + 1
    if count != n:
        return None, f"judge gave {count} scores for {n} responses"
    parts = [p.strip() for p in box.split(",")]
    if not all(p.isascii() and p.isdigit() for p in parts):
        return None, f"judge scores are not integers: {box[:40]!r}"
    return None, f"judge score outside [{SCORE_MIN}, {SCORE_MAX}]: {box[:40]!r}"


def verdict(text: str) -> tuple[Optional[bool], Optional[str]]:
    """(True/False, None) for a completion opening with Yes/No, else (None, reason)."""
    v = parse_verdict(text)
    if v is None:
        return None, f"judge verdict is neither Yes nor No: {text[:40]!r}"
    return v, None

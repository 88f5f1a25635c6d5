"""Which samples train: the shortest correct answer of a prompt (shortest
rejection sampling) and the DPO pairs built around it (Kimi k1.5, §2.4
long2short: "the shortest correct response as the positive; longer
responses as negatives, including wrong ones and correct ones 1.5x longer").

A sample is a dict with at least "tokens" (response length) and "correct";
ties in length go to the earliest sample, so the choice is deterministic.
"""
from __future__ import annotations


def shortest_correct(group: list[dict]) -> dict | None:
    """The shortest correct sample of one prompt's group, or None."""
    correct = [s for s in group if s["correct"]]
    return min(correct, key=lambda s: s["tokens"]) if correct else None


def dpo_pairs(group: list[dict], length_ratio: float = 1.5, max_pairs: int | None = None) -> list[tuple[dict, dict]]:
    """(chosen, rejected) pairs of one prompt: chosen is the shortest correct
    sample; rejected are the correct samples at least `length_ratio` times
    as long as it, then the wrong ones (each kind longest first: the pairs
    that teach brevity come first when `max_pairs` cuts). [] without a
    correct sample."""
    chosen = shortest_correct(group)
    if chosen is None:
        return []
    wrong = sorted((s for s in group if not s["correct"]), key=lambda s: -s["tokens"])
    long = sorted((s for s in group if s["correct"] and s is not chosen
                   and s["tokens"] >= length_ratio * chosen["tokens"]), key=lambda s: -s["tokens"])
    pairs = [(chosen, s) for s in long + wrong]
    return pairs if max_pairs is None else pairs[:max_pairs]

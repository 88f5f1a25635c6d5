"""`math` reward: the response's last `\\boxed{}` (or the last match of the
configured `answer_pattern`) checked against the reference with math-verify
(numbers, fractions, percentages, LaTeX, sets, intervals, expressions).

Departures from calling math-verify on the whole response:
- We extract the answer ourselves with a linear scan, so a megabyte of text
  costs one `rfind`, and only the extracted string reaches the parser.
- A fast path decides the common case (identical strings after trivial
  normalisation, or two integers) without sympy; everything else goes to
  math-verify. The hub runs that slow path in a worker process it can kill,
  because math-verify's own SIGALRM timeout only works on a main thread and
  cannot interrupt C code (`9^{9^{9^9}}` hangs inside GMP).
"""
from __future__ import annotations

import functools
import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Optional

from rewards.boxed import last_boxed
from rewards.types import RewardResult, Sample, register_reward

_INT = re.compile(r"-?\d+")
_DEC = re.compile(r"-?\d*\.?\d+")


def extract_answer(response: str, pattern: Optional[str] = None) -> Optional[str]:
    """The model's final answer: last match of `pattern` (group 1 if any),
    else the last `\\boxed{}` (rewards.boxed, the parser the arithmetic
    task's own check uses too)."""
    if pattern is not None:
        last = None
        for last in re.finditer(pattern, response, flags=re.DOTALL):
            pass
        if last is None:
            return None
        return last.group(1) if last.groups() else last.group(0)
    return last_boxed(response)


def _normalise(s: str) -> str:
    s = s.strip().strip("$")
    for junk in ("\\!", "\\,", "\\;", "\\ ", " ", "\\left", "\\right"):
        s = s.replace(junk, "")
    return s.rstrip(".")


def fast_compare(pred: str, gold: str) -> Optional[bool]:
    """True/False when the answer is decided without sympy, else None."""
    p, g = _normalise(pred), _normalise(gold)
    if not p:
        return False
    if p == g:
        return True
    if _INT.fullmatch(p) and _INT.fullmatch(g):
        return int(p) == int(g)
    if _DEC.fullmatch(p) and _DEC.fullmatch(g):
        try:
            if Decimal(p) == Decimal(g):
                return True
        except InvalidOperation:
            pass
    return None


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    from math_verify import parse

    return parse("\\boxed{" + _normalise(gold) + "}", parsing_timeout=None)


def verify_answer(pred: str, gold: str) -> bool:
    """Full math-verify equivalence. Unbounded time: call it only where the
    caller can kill the process (the hub's math worker)."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from math_verify import parse, verify

    gold_parsed = _parse_gold(gold)
    pred_parsed = parse("\\boxed{" + pred + "}", parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def prepare(sample: Sample, cfg) -> tuple[Optional[RewardResult], Optional[tuple[str, str]]]:
    """Decide a math sample cheaply if possible. Returns (result, None) when
    decided, or (None, (pred, gold)) when math-verify must run."""
    gold = sample.get("answer")
    if gold is None or not isinstance(gold, (str, int, float)):
        return RewardResult(0.0, {"correct": None, "timeout": False, "error": "math sample needs an 'answer'"}), None
    response = sample.get("response")
    if not isinstance(response, str):
        return RewardResult(0.0, {"correct": None, "timeout": False, "error": "sample needs a string 'response'"}), None
    pred = extract_answer(response, cfg.answer_pattern)
    if pred is None or not pred.strip():
        return _result(False, pred, "no answer found"), None
    if len(pred) > cfg.max_answer_chars:
        return _result(False, pred[:64] + "...", f"answer longer than {cfg.max_answer_chars} chars"), None
    decided = fast_compare(pred, str(gold))
    if decided is not None:
        return _result(decided, pred), None
    return None, (pred, str(gold))


def _result(correct: bool, pred: Optional[str], note: Optional[str] = None) -> RewardResult:
    details = {"correct": correct, "timeout": False, "extracted": pred}
    if note:
        details["note"] = note
    return RewardResult(1.0 if correct else 0.0, details)


def finish(pred: str, correct: bool) -> RewardResult:
    return _result(correct, pred)


@register_reward("math")
def make_math_reward(cfg):
    """In-process math reward (no timeout): for tests and trusted input."""

    def math_reward(sample: Sample) -> RewardResult:
        decided, todo = prepare(sample, cfg)
        if decided is not None:
            return decided
        pred, gold = todo
        return finish(pred, verify_answer(pred, gold))

    return math_reward

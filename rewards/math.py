"""`math` reward: the response's last `\\boxed{}` (or the last match of the
configured `answer_pattern`) checked against the reference with math-verify
(numbers, fractions, percentages, LaTeX, sets, intervals, expressions).

Departures from calling math-verify on the whole response:
- We extract the answer ourselves in linear time, so a megabyte of text
  costs one `rfind`, and only the extracted string reaches the parser. A
  user's `answer_pattern` runs under RE2 (google-re2), whose searches are
  linear in the text: Python's `re` backtracks, and a pattern such as
  `\\s*Answer:\\s*(\\S+)` takes quadratic time on a megabyte of blanks. The
  last match takes one search per match, linear for any pattern that settles
  a match without reading far past its end (quadratic at worst for one such
  as `a*b|a`, whose every match looks to the end of the text).
- A fast path decides the common case (identical strings after trivial
  normalisation, or two integers or decimals) without sympy, on digit
  strings rather than `int()`, so an answer of any length compares in linear
  time and never meets Python's 4,300-digit guard on int/str conversion
  (left on in the hub, where it also guards JSON parsing). Everything else
  goes to math-verify. The hub runs that slow path in a worker process it can
  kill (rewards.worker), because math-verify's own SIGALRM timeout only works
  on a main thread and cannot interrupt C code (`9^{9^{9^9}}` hangs in GMP).
- A reference answer math-verify cannot parse is the dataset's fault, not the
  response's: `BadReference`, and the sample is masked (rewards.types).
"""
from __future__ import annotations

import functools
import logging
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Optional

from rewards.boxed import last_boxed
from rewards.types import RewardResult, Sample, failed


class BadReference(ValueError):
    """The reference answer cannot be parsed: the dataset's fault, so its
    sample is masked rather than scored."""


@functools.lru_cache(maxsize=64)
def answer_regex(pattern: str):
    """`pattern` compiled by RE2 (`.` matches newlines, as re.DOTALL did).
    Raises ValueError with RE2's reason for a pattern it cannot run
    (backreferences, lookaround, possessive or atomic groups, `\\Z`)."""
    import re2

    options = re2.Options()
    options.dot_nl = True
    options.log_errors = False
    try:
        return re2.compile(pattern.encode("utf-8", "surrogatepass"), options)
    except re2.error as err:
        reason = err.args[0] if err.args else "unknown error"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(reason) from None


def extract_answer(response: str, pattern: Optional[str] = None) -> Optional[str]:
    """The model's final answer: last match of `pattern` (group 1 if any), run
    by RE2 on the response's UTF-8 bytes, else the last `\\boxed{}`
    (rewards.boxed, the parser the arithmetic task's own check uses too)."""
    if pattern is not None:
        regex = answer_regex(pattern)
        last = None
        for last in regex.finditer(response.encode("utf-8", "surrogatepass")):
            pass
        if last is None:
            return None
        got = last.group(1) if regex.groups else last.group(0)
        if got is None:
            return None
        try:
            return got.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return got.decode("utf-8", "replace")
    return last_boxed(response)


def _normalise(s: str) -> str:
    s = s.strip().strip("$")
    for junk in ("\\!", "\\,", "\\;", "\\ ", " ", "\\left", "\\right"):
        s = s.replace(junk, "")
    return s.rstrip(".")


def _integer(s: str) -> Optional[tuple[bool, str]]:
    """(negative, digits without leading zeros, in ASCII) when `s` is an
    integer literal (`-?\\d+`, any Unicode decimal digits), else None. Linear,
    where `int()` is quadratic and refuses more than 4,300 digits."""
    body = s[1:] if s.startswith("-") else s
    if not body.isdecimal():
        return None
    if not body.isascii():
        body = "".join(str(unicodedata.decimal(c)) for c in body)
    body = body.lstrip("0") or "0"
    return s.startswith("-") and body != "0", body


def _decimal_literal(s: str) -> bool:
    """`s` is `-?\\d*\\.?\\d+`, checked without a regex (that one backtracks
    quadratically on a long run of digits followed by anything else)."""
    body = s[1:] if s.startswith("-") else s
    whole, dot, frac = body.partition(".")
    if not dot:
        return body.isdecimal()
    return (whole == "" or whole.isdecimal()) and frac.isdecimal()


def fast_compare(pred: str, gold: str) -> Optional[bool]:
    """True/False when the answer is decided without sympy, else None.
    Linear time in both lengths."""
    p, g = _normalise(pred), _normalise(gold)
    if not p:
        return False
    if p == g:
        return True
    p_int, g_int = _integer(p), _integer(g)
    if p_int is not None and g_int is not None:
        return p_int == g_int
    if _decimal_literal(p) and _decimal_literal(g):
        try:
            if Decimal(p) == Decimal(g):
                return True
        except InvalidOperation:
            pass
    return None


def reference_text(gold) -> str:
    """The reference answer as text. An int of more than 4,300 digits, which
    `str()` refuses, is written through Decimal, which has no such limit."""
    try:
        return str(gold)
    except ValueError:
        return str(Decimal(gold))


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    from math_verify import parse

    return parse("\\boxed{" + _normalise(gold) + "}", parsing_timeout=None)


def parse_reference(gold: str):
    """math-verify's parse of the reference answer; BadReference when it
    raises or finds nothing to compare with."""
    try:
        parsed = _parse_gold(gold)
    except Exception as err:  # noqa: BLE001  (whatever the parser raises, the reference is at fault)
        raise BadReference(f"reference answer {gold[:40]!r} cannot be parsed "
                           f"({type(err).__name__}: {str(err)[:100]})") from None
    if not parsed:
        raise BadReference(f"reference answer {gold[:40]!r} cannot be parsed")
    return parsed


def verify_answer(pred: str, gold: str) -> bool:
    """Full math-verify equivalence. Unbounded time: call it only where the
    caller can kill the process (the hub's math worker). Raises BadReference
    for a reference answer that cannot be parsed."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from math_verify import parse, verify

    gold_parsed = parse_reference(gold)
    pred_parsed = parse("\\boxed{" + pred + "}", parsing_timeout=None)
    if not pred_parsed:
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
    gold = reference_text(gold)
    decided = fast_compare(pred, gold)
    if decided is not None:
        return _result(decided, pred), None
    return None, (pred, gold)


def _result(correct: bool, pred: Optional[str], note: Optional[str] = None) -> RewardResult:
    details = {"correct": correct, "timeout": False, "extracted": pred}
    if note:
        details["note"] = note
    return RewardResult(1.0 if correct else 0.0, details)


def finish(pred: str, correct: bool) -> RewardResult:
    return _result(correct, pred)


def make_math_reward(cfg):
    """The math reward in this process, with no time limit: `prepare`, then
    math-verify inline. For tests, the judge's corpus labels and trusted
    input; the hub runs the same two steps with the slow one on a worker it
    can kill (rewards.math_pool)."""

    def math_reward(sample: Sample) -> RewardResult:
        decided, todo = prepare(sample, cfg)
        if decided is not None:
            return decided
        pred, gold = todo
        try:
            return finish(pred, verify_answer(pred, gold))
        except BadReference as err:
            return failed(str(err))

    return math_reward

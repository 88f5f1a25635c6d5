"""Every parser that meets a model response (or a judge's completion) on a
hostile megabyte: each must answer in linear time, and answer right.

Each case runs in a forked child with a 20 s guard: a regex that backtracks
holds the GIL, so a thread could not be stopped; a child that overruns is
killed and the test fails as a hang. 20 s is a guard against a hang, not a
speed target (bench/bench_parse.py measures the times, against a benign
input of the same length). The inputs that would hang Python's `re` (the
answer_pattern cases, the old decimal check) are not run under `re` here.
"""
from __future__ import annotations

import multiprocessing

import pytest

from rewards.boxed import last_boxed
from rewards.code import last_python_block
from rewards.format import format_ok
from rewards.judge import parse as judge_parse
from rewards.judge_format import parse_grm_scores, parse_verdict
from rewards.math import answer_regex, extract_answer, fast_compare, prepare, reference_text

MB = 1 << 20
GUARD_S = 20.0
# Patterns that backtrack catastrophically under Python's re on the inputs below.
BLANKS_PATTERN = r"\s*Answer:\s*(\S+)"  # quadratic on a megabyte of blanks
NESTED_PATTERN = r"(a+)+$"  # exponential on a run of a's that does not end the text
DEEP = "{" * (MB // 2) + "}" * (MB // 2)


def guarded(fn, *args):
    """fn(*args) in a forked child; fails the test if it takes more than GUARD_S."""
    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            writer.send(("ok", fn(*args)))
        except BaseException as err:  # noqa: BLE001  (sent back and raised in the test)
            writer.send(("raised", err))

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    writer.close()
    if not reader.poll(GUARD_S):
        proc.kill()
        proc.join()
        pytest.fail(f"{getattr(fn, '__name__', fn)} ran past {GUARD_S:g}s on {len(args[0]):,} chars: a hang")
    status, value = reader.recv()
    proc.join()
    if status == "raised":
        raise value
    return value


class _Cfg:
    """The two RewardsConfig fields prepare() reads."""

    def __init__(self, answer_pattern=None, max_answer_chars=4096):
        self.answer_pattern = answer_pattern
        self.max_answer_chars = max_answer_chars


def _prepared(response: str, gold: str, pattern=None, max_chars=2 * MB):
    decided, todo = prepare({"kind": "math", "response": response, "answer": gold}, _Cfg(pattern, max_chars))
    return None if decided is None else (decided.score, decided.details.get("note")), todo is not None


def _pattern(pattern: str):
    return lambda text: extract_answer(text, pattern)


def _format_with(pattern: str):
    return lambda text: format_ok(text, pattern)


CASES = [
    # (id, parser, hostile input, the parser's answer)
    ("fence-blanks", last_python_block, "```" + " " * MB, None),
    ("fence-blanks-then-block", last_python_block, "```" + " " * MB + "\n```python\nprint(1)\n```", "print(1)\n"),
    ("fence-unclosed", last_python_block, "```python\n" + "x = 1\n" * (MB // 6), None),
    ("fence-many-openings", last_python_block, "```py " * (MB // 6), None),
    ("boxed-open-braces", last_boxed, "\\boxed{" + "{" * MB, None),
    ("boxed-blanks-then-box", last_boxed, "\\boxed" + " " * MB + "{42}", "42"),
    ("boxed-many-tags", last_boxed, "\\boxed{" * (MB // 7), None),
    ("boxed-deep-and-closed", last_boxed, "\\boxed{" + DEEP + "}", DEEP),
    ("pattern-blanks", _pattern(BLANKS_PATTERN), " " * MB + "Answer:", None),
    ("pattern-blanks-after", _pattern(BLANKS_PATTERN), "Answer:" + " " * MB, None),
    ("pattern-blanks-then-answer", _pattern(BLANKS_PATTERN), " " * MB + "Answer: 42", "42"),
    ("pattern-nested", _pattern(NESTED_PATTERN), "a" * MB + "!", None),
    ("pattern-nested-match", _pattern(NESTED_PATTERN), "b" + "a" * MB, "a" * MB),
    ("pattern-many-matches", _pattern(BLANKS_PATTERN), "Answer: 1 " * (MB // 10) + "Answer: 42", "42"),
    ("format-many-thinks", format_ok, "<think>" * (MB // 7), False),
    ("format-long-think", format_ok, "<think>" + "x" * MB + "</think> \\boxed{1}", True),
    ("format-pattern-blanks", _format_with(BLANKS_PATTERN), "<think>a</think>" + " " * MB + "Answer:", False),
    ("verdict-blanks", parse_verdict, " " * MB + "Maybe", None),
    ("verdict-blanks-then-yes", parse_verdict, " " * MB + "Yes", True),
    ("grm-unclosed", lambda t: parse_grm_scores(t, 2), "Scores: \\boxed{" + "1," * (MB // 2), None),
    ("grm-blanks-then-scores", lambda t: parse_grm_scores(t, 2), "Scores:" + " " * MB + "\\boxed{7, 3}", [7, 3]),
    ("grm-many-scores", lambda t: parse_grm_scores(t, 2), "Scores: \\boxed{1, 2}" * (MB // 20), [1, 2]),
    ("grm-many-headers", lambda t: parse_grm_scores(t, 2), "Scores:" * (MB // 7), None),
    ("judge-grm-reason", lambda t: judge_parse.grm_scores(t, 2)[1], "Scores: \\boxed{" + "1," * (MB // 2),
     "judge output has no 'Scores: \\boxed{...}'"),
    ("judge-verdict-reason", lambda t: judge_parse.verdict(t)[0], " " * MB + "No", False),
]


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    """Import RE2 and compile the patterns before forking (the children reuse them)."""
    answer_regex(BLANKS_PATTERN)
    answer_regex(NESTED_PATTERN)


@pytest.mark.parametrize("parser,text,want", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parser_on_a_hostile_megabyte(parser, text, want):
    assert len(text) >= MB // 2
    assert guarded(parser, text) == want


def test_math_fast_path_on_a_megabyte_of_digits():
    """The old check `-?\\d*\\.?\\d+` backtracked quadratically on digits
    followed by anything else; int() refused more than 4,300 digits."""
    digits = "7" * MB
    assert guarded(lambda p: fast_compare(p, "7"), digits + "x") is None
    assert guarded(lambda p: fast_compare(p, digits), digits) is True
    assert guarded(lambda p: fast_compare(p, "000" + digits), digits) is True  # leading zeros
    assert guarded(lambda p: fast_compare(p, digits[:-1] + "8"), digits) is False
    assert guarded(lambda p: fast_compare(p, "-" + digits), digits) is False
    assert guarded(lambda p: fast_compare(p, digits + ".50"), digits + ".5") is True  # as decimals
    assert guarded(lambda p: fast_compare(p, digits + ".6"), digits + ".5") is None  # math-verify's call
    assert fast_compare("-0", "0") is True and fast_compare("٣", "3") is True  # as int() read them


def test_math_prepare_on_a_megabyte_response():
    """The whole inline path of a math sample (extraction, the length cap,
    the fast path) on a hostile megabyte, with max_answer_chars raised."""
    digits = "9" * MB
    assert guarded(lambda r: _prepared(r, digits), "\\boxed{" + digits + "}") == ((1.0, None), False)
    assert guarded(lambda r: _prepared(r, digits), "\\boxed{" + digits[:-1] + "8}") == ((0.0, None), False)
    assert guarded(lambda r: _prepared(r, "1"), "\\boxed{" + "{" * MB) == ((0.0, "no answer found"), False)
    long_cap = guarded(lambda r: _prepared(r, "1", max_chars=4096), "\\boxed{" + digits + "}")
    assert long_cap == ((0.0, "answer longer than 4096 chars"), False)
    assert guarded(lambda r: _prepared(r, "42", BLANKS_PATTERN), " " * MB + "Answer: 42") == ((1.0, None), False)
    no_answer = guarded(lambda r: _prepared(r, "42", BLANKS_PATTERN), " " * MB + "Answer:")
    assert no_answer == ((0.0, "no answer found"), False)


def test_a_long_int_reference_is_written_out():
    """str() refuses an int of more than 4,300 digits; the reference's text does not."""
    assert reference_text(10**10_000) == "1" + "0" * 10_000
    assert reference_text(-(10**5000) + 1) == "-" + "9" * 5000
    assert reference_text(12) == "12" and reference_text(0.5) == "0.5"


def test_the_scorer_reads_hostile_megabytes_inline():
    """One hostile megabyte per kind through the hub's own scorer: decided
    inline (no math worker, no sandbox), scored, and the answers right."""
    from rewards.config import RewardsConfig
    from rewards.scorer import Scorer

    def score(cfg_args: dict, samples: list[dict]) -> list[float]:
        scorer = Scorer(RewardsConfig(**cfg_args))
        try:
            return [r.score for r in scorer.score_items(samples)]
        finally:
            scorer.close()

    tests = [{"input": "", "output": "1"}]
    samples = [
        {"kind": "math", "response": "\\boxed{" + "{" * MB, "answer": "1"},
        {"kind": "math", "response": "x" * MB + "\\boxed{12}", "answer": "12"},
        {"kind": "format", "response": "<think>" * (MB // 7)},
        {"kind": "format", "response": "<think>" + "x" * MB + "</think>\\boxed{1}"},
        {"kind": "code", "response": "```" + " " * MB, "tests": tests},
    ]
    assert guarded(lambda s: score({}, s), samples) == [0.0, 1.0, 0.0, 1.0, 0.0]
    with_pattern = [{"kind": "math", "response": " " * MB + "Answer:", "answer": "1"},
                    {"kind": "math", "response": " " * MB + "Answer: 1", "answer": "1"},
                    {"kind": "format", "response": "<think>a</think>" + " " * MB + "Answer:"}]
    assert guarded(lambda s: score({"answer_pattern": BLANKS_PATTERN}, s), with_pattern) == [0.0, 1.0, 0.0]


def test_a_judge_score_of_many_digits_is_no_score():
    assert guarded(lambda t: parse_grm_scores(t, 1), "Scores: \\boxed{" + "9" * 5000 + "}") is None

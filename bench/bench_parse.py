"""Parsers of model output on hostile input, as ratios against a benign input
of the same length measured in the same invocation.

Every parser that meets a response (the code fence, the boxed answer, a
user's `answer_pattern` under RE2, the format check, the math fast path) or
a judge's completion (GenRM verdict, GRM scores) gets:

- hostile side: a 1 MiB input built to make a backtracking parser
  super-linear (blanks before a pattern that cannot match, unclosed braces
  and fences, `(a+)+$` on a run of a's, 1 MiB of digits followed by a
  letter, ...);
- benign side [baseline]: 1 MiB of prose of the same length with the thing
  the parser looks for at its end, parsed by the same function;
- the ratio hostile / benign, and the growth of the hostile time from a
  quarter of the length to all of it (4 for linear time, 16 for quadratic).

Then the hub: one hostile 1 MiB response of each item kind (math by
`\\boxed{}`, math by `answer_pattern`, format, code) through
`rewards.scorer.Scorer.score_items`, one call per response (default config,
its cache emptied before each call, so each is hashed and scored), against a
benign 1 MiB response of the same kind; target: under a second each. Judge kinds
need a judge engine and are left out there (their parsers are timed above).

For contrast, Python's `re` on the two answer_pattern cases at sizes it can
still finish (it is not run on a megabyte).

Times are the best of `--repeats` runs, in one process, on this machine.

    python bench/bench_parse.py [--repeats 3] [--mib 1]
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from importlib import metadata

BLANKS_PATTERN = r"\s*Answer:\s*(\S+)"
NESTED_PATTERN = r"(a+)+$"


def prose(n: int, tail: str = "") -> str:
    """n characters of benign text ending with `tail`."""
    body = "the sum of the first column is seven and we carry one. " * (n // 56 + 1)
    return body[:n - len(tail)] + tail


def parsers(n: int):
    """(name, function, hostile input of length ~n, benign input of the same length)."""
    from rewards.boxed import last_boxed
    from rewards.code import last_python_block
    from rewards.format import format_ok
    from rewards.judge import parse as judge_parse
    from rewards.judge_format import parse_grm_scores, parse_verdict
    from rewards.math import extract_answer, fast_compare

    digits = "7" * n
    lines = (n - 10) // 6
    return [
        ("code fence", last_python_block, "```" + " " * (n - 3),
         prose(n, "\n```python\nprint(1)\n```")),
        ("code fence, unclosed", last_python_block, "```python\n" + "x = 1\n" * lines,
         prose(6, "") + "```python\n" + "x = 1\n" * (lines - 1) + "```\n"),
        ("boxed, open braces", last_boxed, "\\boxed{" + "{" * (n - 7), prose(n, "\\boxed{42}")),
        ("boxed, blanks before the brace", last_boxed, "\\boxed" + " " * (n - 10) + "{42}", prose(n, "\\boxed{42}")),
        ("answer_pattern " + BLANKS_PATTERN + ", blanks", lambda t: extract_answer(t, BLANKS_PATTERN),
         " " * (n - 7) + "Answer:", prose(n, "Answer: 42")),
        ("answer_pattern " + NESTED_PATTERN + ", a's then !", lambda t: extract_answer(t, NESTED_PATTERN),
         "a" * (n - 1) + "!", prose(n, " aaaa")),
        ("answer_pattern, one match per 10 chars", lambda t: extract_answer(t, BLANKS_PATTERN),
         "Answer: 1 " * (n // 10), prose(n, "Answer: 42")),
        ("format_ok, <think> repeated", format_ok, "<think>" * (n // 7),
         "<think>" + prose(n - 26, "") + "</think> \\boxed{1}"),
        ("math fast_compare, digits then a letter", lambda t: fast_compare(t, "7"), digits[:-1] + "x",
         digits),
        ("math fast_compare, digits, last differs", lambda t: fast_compare(t, digits), "000" + digits[:-4] + "8",
         digits),
        ("judge parse_verdict, blanks", parse_verdict, " " * (n - 5) + "Maybe", " Yes" + prose(n - 4)),
        ("judge parse_grm_scores, unclosed", lambda t: parse_grm_scores(t, 2),
         "Scores: \\boxed{" + "1," * ((n - 15) // 2), prose(n, "Scores: \\boxed{7, 3}")),
        ("judge parse_grm_scores, many", lambda t: parse_grm_scores(t, 2), "Scores: \\boxed{1, 2}" * (n // 20),
         prose(n, "Scores: \\boxed{7, 3}")),
        ("judge.parse grm_scores, unclosed", lambda t: judge_parse.grm_scores(t, 2),
         "Scores: \\boxed{" + "1," * ((n - 15) // 2), prose(n, "Scores: \\boxed{7, 3}")),
    ]


def best(fn, arg, repeats: int) -> float:
    out = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(arg)
        out = min(out, time.perf_counter() - t)
    return out


def quarter(name: str, n: int) -> str:
    """The hostile input of the same parser at a quarter of the length."""
    for row in parsers(n // 4):
        if row[0] == name:
            return row[2]
    raise KeyError(name)


def parser_table(n: int, repeats: int) -> list[tuple]:
    from rewards.math import answer_regex

    answer_regex(BLANKS_PATTERN)
    answer_regex(NESTED_PATTERN)
    rows = []
    for name, fn, hostile, benign in parsers(n):
        t_benign = best(fn, benign, repeats)
        t_hostile = best(fn, hostile, repeats)
        t_quarter = best(fn, quarter(name, n), repeats)
        rows.append((name, len(hostile), len(benign), t_benign, t_hostile, t_hostile / max(t_benign, 1e-9),
                     t_hostile / max(t_quarter, 1e-9)))
    return rows


def hub_samples(n: int) -> list[tuple[str, dict, dict, dict]]:
    """(name, config overrides, hostile sample, benign sample)."""
    tests = [{"input": "", "output": "1"}]
    pattern = {"answer_pattern": BLANKS_PATTERN}
    return [
        ("math, \\boxed{", {}, {"kind": "math", "response": "\\boxed{" + "{" * (n - 7), "answer": "1"},
         {"kind": "math", "response": prose(n, "\\boxed{1}"), "answer": "1"}),
        ("math, answer_pattern", pattern, {"kind": "math", "response": " " * (n - 7) + "Answer:", "answer": "1"},
         {"kind": "math", "response": prose(n, "Answer: 1"), "answer": "1"}),
        ("format", {}, {"kind": "format", "response": "<think>" * (n // 7)},
         {"kind": "format", "response": "<think>" + prose(n - 26) + "</think> \\boxed{1}"}),
        ("format, answer_pattern", pattern,
         {"kind": "format", "response": "<think>a</think>" + " " * (n - 23) + "Answer:"},
         {"kind": "format", "response": "<think>" + prose(n - 26) + "</think> Answer: 1"}),
        ("code (no block: no sandbox run)", {}, {"kind": "code", "response": "```" + " " * (n - 3), "tests": tests},
         {"kind": "code", "response": prose(n, "no code here"), "tests": tests}),
    ]


def hub_table(n: int, repeats: int) -> list[tuple]:
    from rewards.config import RewardsConfig
    from rewards.scorer import Scorer

    rows = []
    for name, overrides, hostile, benign in hub_samples(n):
        scorer = Scorer(RewardsConfig(**overrides))

        def score(sample: dict):
            scorer._cache.clear()  # every call hashes, checks and stores, as for a new response
            return scorer.score_items([sample])

        try:
            score({"kind": "math", "response": "\\boxed{1}", "answer": "1"})  # warm (the inline path)
            t_benign = best(score, benign, repeats)
            t_hostile = best(score, hostile, repeats)
            (got,) = score(hostile)
        finally:
            scorer.close()
        rows.append((name, t_benign, t_hostile, t_hostile / max(t_benign, 1e-9), got.score, got.masked))
    return rows


def re_contrast() -> list[tuple]:
    """Python's re on the answer_pattern cases at sizes it finishes."""
    rows = []
    for pattern, make, sizes in ((BLANKS_PATTERN, lambda k: " " * k + "Answer:", (4096, 8192, 16384)),
                                 (NESTED_PATTERN, lambda k: "a" * k + "!", (18, 20, 22))):
        for k in sizes:
            text = make(k)
            t = time.perf_counter()
            for _ in re.finditer(pattern, text, flags=re.DOTALL):
                pass
            rows.append((pattern, len(text), time.perf_counter() - t))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs per timing; the best is kept")
    ap.add_argument("--mib", type=float, default=1.0, help="input length in MiB (characters)")
    args = ap.parse_args()
    n = int(args.mib * (1 << 20))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bench_parse: inputs of {n:,} characters, best of {args.repeats}; python {platform.python_version()}, "
          f"google-re2 {metadata.version('google-re2')}, {os.cpu_count()} CPUs, 1-min load {load:.1f}")
    print("hostile side: an input built against backtracking; benign side [baseline]: prose of the same length "
          "ending with what the parser looks for; same function, same process\n")
    print("| parser | hostile chars | benign chars | benign s [baseline] | hostile s | hostile / benign "
          "| hostile growth, 1/4 -> full length |")
    print("|---|---|---|---|---|---|---|")
    for name, nh, nb, tb, th, ratio, growth in parser_table(n, args.repeats):
        print(f"| {name} | {nh:,} | {nb:,} | {tb:.4f} | {th:.4f} | {ratio:.1f} | {growth:.1f} |")
    print("\nhub: Scorer.score_items, one response per call, its cache emptied before each (target: hostile "
          "under 1 s)\n")
    print("| kind | benign s [baseline] | hostile s | hostile / benign | hostile score | masked |")
    print("|---|---|---|---|---|---|")
    for name, tb, th, ratio, score, masked in hub_table(n, args.repeats):
        print(f"| {name} | {tb:.4f} | {th:.4f} | {ratio:.1f} | {score:g} | {masked} |")
    print("\nfor contrast, Python's re (flags=DOTALL) on the answer_pattern inputs, at sizes it finishes\n")
    print("| pattern | chars | s |")
    print("|---|---|---|")
    for pattern, k, t in re_contrast():
        print(f"| `{pattern}` | {k:,} | {t:.3f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

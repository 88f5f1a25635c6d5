"""`code` reward: the response's last fenced Python block, run in the
sandbox (rewards.sandbox) against the sample's tests.

The code sample schema (every key but `tests` optional):

- `tests`, one of:
  - a list of {"input": str, "output": str}, or {"inputs": [...],
    "outputs": [...]} (the APPS/TACO layout): stdin/stdout tests; the
    output is compared line by line, trailing whitespace ignored;
  - {"fn_name": str, "inputs": [[arg, ...], ...], "outputs": [value, ...]}
    (TACO's call-based layout): each pair is the test
    `assert fn_name(*args) == value`;
  - one str, or a list of str: Python test code (`assert f(2) == 4`, several
    asserts, helper functions, `math.isclose`, classes the program defines
    (`Solution().twoSum(...)`), `unittest.TestCase` classes), each str one
    test. They run in a verdict process that never runs the program's code
    (rewards.code_tests; threat model: docs/sandbox.md);
- `entry_point`: HumanEval's layout: the test code defines
  `check(candidate)`, which is called with the program's function of this
  name;
- `test_imports`: str or list of str, MBPP's: statements run before the
  program and before each test (`import math`).

Score: passed / total (`code_scoring: fraction`) or 1 only if all pass
(`all`). `correct` is True when every test passed. The item's time budget
(`timeout_s`) is shared by its tests; each test is also capped at `wall_s`;
`timeout` is True when a test ran out of time twice (the second time on a
fresh sandbox of its own: `retried`). A sample whose tests cannot run (a test
that does not parse, a sandbox that cannot start) is masked with `error`.
"""
from __future__ import annotations

import re
import time
from typing import Any, Optional

from rewards.code_tests import run_tests
from rewards.sandbox import run_python
from rewards.types import RewardResult, Sample

# The line that opens a fenced block: ``` then an optional language word, blanks
# bounded so that one fence costs O(1) to classify, then the newline.
_OPENING = re.compile(r"[ \t]{0,64}([\w+#.-]{0,32})[ \t]{0,64}\n")
_PYTHON = ("", "python", "python3", "py")


def last_python_block(response: str) -> Optional[str]:
    """The content of the response's last fenced block labelled python,
    python3, py or nothing; None when there is none.

    Linear time: one pass over the fences (`str.find`), each opening line
    classified by a bounded match. A fence that opens no block (``` with no
    newline after it) is skipped; a block in another language is skipped
    whole, so its closing fence never opens a block of its own."""
    last, pos = None, 0
    while True:
        start = response.find("```", pos)
        if start < 0:
            return last
        opening = _OPENING.match(response, start + 3)
        if opening is None:
            pos = start + 3
            continue
        body = opening.end()
        end = response.find("```", body)
        if end < 0:
            return last
        if opening.group(1).lower() in _PYTHON:
            last = response[body:end]
        pos = end + 3


def code_spec(sample: Sample) -> tuple[list[dict], Optional[str], tuple[str, ...]]:
    """(tests as {"input", "output"} or {"assert"} dicts, entry_point,
    test_imports) of a code sample; ValueError naming what is malformed."""
    tests = sample.get("tests")
    if isinstance(tests, str):
        tests = [tests]
    elif isinstance(tests, dict) and "fn_name" in tests:
        tests = _call_based(tests)
    elif isinstance(tests, dict) and "inputs" in tests and "outputs" in tests:
        tests = [{"input": i, "output": o} for i, o in zip(tests["inputs"], tests["outputs"])]
    if not isinstance(tests, list) or not tests:
        raise ValueError("code sample needs non-empty 'tests'")
    out = []
    for t in tests:
        if isinstance(t, str):
            out.append({"assert": t})
        elif isinstance(t, dict) and "output" in t:
            out.append({"input": str(t.get("input", "")), "output": str(t["output"])})
        else:
            raise ValueError("each test is a string of Python or {'input', 'output'}")
    entry = sample.get("entry_point")
    if entry is not None and not (isinstance(entry, str) and entry.isidentifier()):
        raise ValueError("'entry_point' must be a Python name")
    if entry is not None and not any("assert" in t for t in out):
        raise ValueError("'entry_point' needs test code defining check(candidate)")
    imports = sample.get("test_imports") or ()
    if isinstance(imports, str):
        imports = (imports,)
    if not isinstance(imports, (list, tuple)) or not all(isinstance(i, str) for i in imports):
        raise ValueError("'test_imports' must be a string or a list of strings")
    for text in (*imports, *(t["assert"] for t in out if "assert" in t)):
        compile(text, "<test>", "exec")  # SyntaxError: the sample is broken, not the program
    return out, entry, tuple(imports)


def _call_based(tests: dict) -> list[str]:
    name, inputs, outputs = tests["fn_name"], tests.get("inputs"), tests.get("outputs")
    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError("'fn_name' must be a Python name")
    if not (isinstance(inputs, list) and isinstance(outputs, list) and len(inputs) == len(outputs)
            and all(isinstance(a, list) for a in inputs)):
        raise ValueError("call-based tests need 'inputs' (a list of argument lists) and as many 'outputs'")
    return [f"assert {name}(*{args!r}) == {value!r}" for args, value in zip(inputs, outputs)]


def normalise_tests(tests: Any) -> list[dict]:
    """The tests of a sample whose only key is `tests` (see code_spec)."""
    return code_spec({"tests": tests})[0]


def _same_output(got: str, want: str) -> bool:
    a = [line.rstrip() for line in got.strip().splitlines()]
    b = [line.rstrip() for line in want.strip().splitlines()]
    return a == b


def _stdio_test(program: str, test: dict, limits, left: float) -> tuple[str, bool, bool, Optional[str]]:
    """(verdict, output cut, retried, sandbox error) of one stdin/stdout test;
    a run that times out gets a second run (the checker-failure rule)."""
    cut = False
    for attempt in range(2):
        run = run_python(program, test["input"], limits=limits.model_copy(update={"wall_s": min(limits.wall_s, left)}))
        if run.error:
            return "error", cut, attempt > 0, run.error
        cut = cut or run.output_truncated
        if not run.timed_out:
            return ("pass" if run.ok and _same_output(run.stdout, test["output"]) else "fail"), cut, attempt > 0, None
        left = limits.wall_s
    return "timeout", cut, True, None


def score_code(sample: Sample, cfg) -> RewardResult:
    response = sample.get("response")
    if not isinstance(response, str):
        return RewardResult(0.0, {"correct": None, "timeout": False, "error": "sample needs a string 'response'"})
    try:
        tests, entry, imports = code_spec(sample)
    except SyntaxError as err:  # the sample's test is broken: not the program's fault
        return RewardResult(0.0, {"correct": None, "timeout": False, "error": f"a test does not parse: {err}"})
    except ValueError as err:
        return RewardResult(0.0, {"correct": None, "timeout": False, "error": str(err)})
    program = last_python_block(response)
    if program is None:
        return RewardResult(0.0, {"correct": False, "timeout": False, "passed": 0, "total": len(tests),
                                  "note": "no fenced python block"})
    deadline = time.monotonic() + cfg.timeout_s
    verdicts: dict[int, tuple[str, str]] = {}
    cut = retried = False
    for i, t in enumerate(tests):
        if "input" in t:
            verdict, cut_i, again, error = _stdio_test(program, t, cfg.sandbox, deadline - time.monotonic())
            if error:
                return RewardResult(0.0, {"correct": None, "timeout": False, "error": error})
            verdicts[i] = (verdict, "" if verdict == "pass" else "wrong output" if verdict == "fail" else "timed out")
            cut, retried = cut or cut_i, retried or again
    asserts = [i for i, t in enumerate(tests) if "assert" in t]
    if asserts:
        run = run_tests(program, [tests[i]["assert"] for i in asserts], cfg.sandbox,
                        max(0.05, deadline - time.monotonic()), entry_point=entry, imports=imports)
        if run.error:
            return RewardResult(0.0, {"correct": None, "timeout": False, "error": run.error})
        cut, retried = cut or run.output_truncated, retried or run.retried
        for i, o in zip(asserts, run.outcomes):
            verdicts[i] = (o.verdict, o.why)
    broken = [why for verdict, why in verdicts.values() if verdict == "error"]
    if broken:
        return RewardResult(0.0, {"correct": None, "timeout": False, "error": f"a test cannot run: {broken[0]}"})
    passed = sum(verdict == "pass" for verdict, _ in verdicts.values())
    total = len(tests)
    all_pass = passed == total
    score = passed / total if cfg.code_scoring == "fraction" else float(all_pass)
    timeout = any(verdict == "timeout" for verdict, _ in verdicts.values())
    details = {"correct": all_pass, "timeout": timeout, "passed": passed, "total": total}
    if retried:
        details["retried"] = True
    first = next((why for verdict, why in verdicts.values() if verdict != "pass" and why), None)
    if first:
        details["why"] = first
    if cut:
        details["note"] = "output limit"
    return RewardResult(score, details)


"""`code` reward: the response's last fenced Python block, run in the
sandbox (rewards.sandbox) against the sample's tests.

`tests` may be:
- a list of {"input": str, "output": str}: stdin/stdout tests; output is
  compared line by line with trailing whitespace ignored;
- {"inputs": [...], "outputs": [...]} (the APPS/TACO layout), same meaning;
- a list of str, or one str: Python (e.g. `assert f(2) == 4`) run after the
  program by rewards/assert_harness.py. A test passes only when the harness
  prints this run's secret after the test code returned normally and every
  comparison in it held on plain builtin values: exiting early
  (`sys.exit(0)`, `os._exit(0)`, atexit), changing how failures are reported,
  patching builtins or returning objects that compare equal to anything all
  score 0 (threat model: docs/sandbox.md).
Score: passed / total (`code_scoring: fraction`) or 1 only if all pass
(`all`). `correct` is True when every test passed. The item's time budget
(`timeout_s`) is shared by its tests; each run is also capped at `wall_s`;
`timeout` is True when any run was killed for time.
"""
from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any, Optional

from rewards.assert_rewrite import rewrite_test
from rewards.sandbox import run_python
from rewards.types import RewardResult, Sample, register_reward

_HARNESS = (Path(__file__).parent / "assert_harness.py").read_text()
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def last_python_block(response: str) -> Optional[str]:
    last = None
    for last in _FENCE.finditer(response):
        pass
    return last.group(1) if last else None


def normalise_tests(tests: Any) -> list[dict]:
    """Tests as a list of {"input", "output"} or {"assert"} dicts; ValueError if malformed."""
    if isinstance(tests, str):
        return [{"assert": tests}]
    if isinstance(tests, dict) and "inputs" in tests and "outputs" in tests:
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
    return out


def _same_output(got: str, want: str) -> bool:
    a = [line.rstrip() for line in got.strip().splitlines()]
    b = [line.rstrip() for line in want.strip().splitlines()]
    return a == b


def run_assert_test(program: str, test: str, limits):
    """Run `test` after `program` under the harness; (sandbox result, passed).
    Raises SyntaxError when the test itself does not parse."""
    nonce = secrets.token_hex(16)
    payload = json.dumps({"nonce": nonce, "code": program, "test": rewrite_test(test)})
    run = run_python(_HARNESS, payload, limits=limits)
    lines = run.stdout.rstrip("\n").rsplit("\n", 1)
    return run, run.ok and lines[-1] == nonce


def score_code(sample: Sample, cfg) -> RewardResult:
    response = sample.get("response")
    if not isinstance(response, str):
        return RewardResult(0.0, {"correct": None, "timeout": False, "error": "sample needs a string 'response'"})
    try:
        tests = normalise_tests(sample.get("tests"))
    except ValueError as err:
        return RewardResult(0.0, {"correct": None, "timeout": False, "error": str(err)})
    program = last_python_block(response)
    if program is None:
        return RewardResult(0.0, {"correct": False, "timeout": False, "passed": 0, "total": len(tests),
                                  "note": "no fenced python block"})
    deadline = time.monotonic() + cfg.timeout_s
    passed, timeout, errors = 0, False, []
    for t in tests:
        left = deadline - time.monotonic()
        if left <= 0.05:
            timeout = True
            break
        limits = cfg.sandbox.model_copy(update={"wall_s": min(cfg.sandbox.wall_s, left)})
        if "assert" in t:
            try:
                run, ok = run_assert_test(program, t["assert"], limits)
            except SyntaxError as err:  # the sample's test is broken: not the program's fault
                return RewardResult(0.0, {"correct": None, "timeout": False, "error": f"a test does not parse: {err}"})
        else:
            run = run_python(program, t["input"], limits=limits)
            ok = run.ok and _same_output(run.stdout, t["output"])
        if run.error:  # the sandbox itself failed: not the program's fault
            return RewardResult(0.0, {"correct": None, "timeout": False, "error": run.error})
        if run.timed_out:
            timeout = True
        if run.output_truncated:
            errors.append("output limit")
        passed += ok
    total = len(tests)
    all_pass = passed == total
    score = passed / total if cfg.code_scoring == "fraction" else float(all_pass)
    details = {"correct": all_pass, "timeout": timeout, "passed": passed, "total": total}
    if errors:
        details["note"] = ", ".join(sorted(set(errors)))
    return RewardResult(score, details)


@register_reward("code")
def make_code_reward(cfg):
    def code_reward(sample: Sample) -> RewardResult:
        return score_code(sample, cfg)

    return code_reward

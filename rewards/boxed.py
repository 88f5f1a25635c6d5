"""The one `\\boxed{}` parser: the final answer of a response is the content
of its last `\\boxed{...}` (or `\\fbox{...}`), braces balanced.

Both the math reward (rewards/math.py) and the built-in arithmetic task's
own check (rl/data/arith.py, used to evaluate a base model) read answers
here, so a base model's measured accuracy and the RL reward extract the same
string from the same response. Standard library only, linear time: one
`rfind` per tag and one scan of the box (a megabyte of text without a box
costs two `rfind`s).
"""
from __future__ import annotations

from typing import Optional

TAGS = ("\\boxed", "\\fbox")


def last_boxed(text: str) -> Optional[str]:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` in `text`, else None.

    Whitespace may stand between the tag and its `{`; anything else (or no
    closing brace) means the last box holds no answer, and the result is None
    rather than an earlier box's content."""
    start, tag = max((text.rfind(t), t) for t in TAGS)
    if start < 0:
        return None
    i = start + len(tag)
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        ch = text[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None

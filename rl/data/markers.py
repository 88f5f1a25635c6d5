"""The text markers every task's responses share: the thinking span and the
boxed final answer.

They live with the tasks (the lowest layer that writes them) so that the
tokenizers in `rl.base`, which make each marker a single token, read them
from here and `rl.data` never imports `rl.base`.
"""
from __future__ import annotations

THINK_OPEN, THINK_CLOSE, BOXED = "<think>", "</think>", "\\boxed{"

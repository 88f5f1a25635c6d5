"""The task interface: where a run's rows come from, which rows are held
out, and which reward kinds score them.

A task is built from the run's `DataConfig` by the factory `TASKS` holds
under `data.task`; `splits()` gives (training rows, validation rows) in the
row shape of rl/data/rows.py and `reward_kinds()` the kinds those rows name
(rewards.registry.KINDS's keys). Each source is its own module:

    arith          rl/data/arith.py               generated sums, `math`
    file           rl/data/file_layouts.py        JSONL/Parquet rows, their own kinds
    reasoning_gym  rl/data/reasoning_gym_task.py  reasoning-gym entries, `reasoning_gym`
    humaneval      rl/data/humaneval_task.py      HumanEval problems, `code`

Adding a source is one module with a class of these two methods and one line
in `TASKS` (and its name in rl.data.config.TaskName, which a recipe validates
against without importing the sources). Multi-turn environments will extend
this interface; the rows keep their shape.
"""
from __future__ import annotations

from typing import Callable, Protocol

from rl.data.arith import ArithTask
from rl.data.config import DataConfig
from rl.data.file_layouts import FileTask
from rl.data.humaneval_task import HumanEvalTask
from rl.data.reasoning_gym_task import ReasoningGymTask


class Task(Protocol):
    """One source of prompt rows."""

    def splits(self) -> tuple[list[dict], list[dict]]:
        """(training rows, validation rows); the same on every call for one config."""

    def reward_kinds(self) -> tuple[str, ...]:
        """The reward kinds the rows name, sorted."""


TASKS: dict[str, Callable[[DataConfig], Task]] = {
    "arith": ArithTask,
    "file": FileTask,
    "reasoning_gym": ReasoningGymTask,
    "humaneval": HumanEvalTask,
}


def make_task(cfg: DataConfig) -> Task:
    return TASKS[cfg.task](cfg)

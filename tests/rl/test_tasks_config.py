"""The task registry against the config's task names, settings read by one
task refused with the others, and dumped configs that load again."""
from __future__ import annotations

import typing

import pytest
import yaml

from rl.data import arith
from rl.data.config import DataConfig, TaskName
from rl.data.task import TASKS, make_task
from rl.recipe import load_recipe, to_yaml, validate

CONFIGS = {
    "arith": ["data.task=arith"],
    "file": ["data.task=file", "data.train_path=t.jsonl", "data.columns={prompt: question, answer: r.gt}"],
    "reasoning_gym": ["data.task=reasoning_gym", "data.reasoning_gym={datasets: {chain_sum: {weight: 2}, "
                      "leg_counting: {config: {min_animals: 2}}}}", "data.train_size=500"],
    "humaneval": ["data.task=humaneval", "data.val_size=20", "data.system_prompt=Write Python."],
}


def test_every_task_name_has_a_factory():
    assert set(TASKS) == set(typing.get_args(TaskName)) == set(CONFIGS)


@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_a_dumped_recipe_loads_again(task):
    recipe = load_recipe("recipes/tiny-arith.yaml", CONFIGS[task])
    assert recipe.data.task == task
    again = validate(yaml.safe_load(to_yaml(recipe)))
    assert again == recipe and again.data == DataConfig(**recipe.data.model_dump())


def test_arith_is_the_existing_task():
    task = make_task(DataConfig(train_size=30, val_size=10))
    train, val = task.splits()
    assert [{k: v for k, v in r.items() if k != "meta"} for r in train] == arith.make_prompts(30, seed=0)
    assert val == arith.validation_prompts(10) and task.reward_kinds() == ("math",)


@pytest.mark.parametrize("kw, message", [
    ({"task": "humaneval", "digits_max": 5}, "digits_max is only read with task 'arith' (task is 'humaneval')"),
    ({"task": "humaneval", "columns": {}}, "columns is only read with task 'file'"),
    ({"val_path": "v.jsonl"}, "val_path is only read with task 'file' (task is 'arith')"),
    ({"task": "file", "train_path": "t.jsonl", "train_size": 10}, "train_size is only read with task 'arith' or"),
    ({"task": "file", "train_path": "t.jsonl", "reasoning_gym": "chain_sum"}, "reasoning_gym is only read"),
])
def test_a_setting_of_another_task_is_refused(kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DataConfig(**kw)

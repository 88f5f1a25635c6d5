"""`data.task: humaneval`: the 164 HumanEval problems as `code` rows."""
from __future__ import annotations

import ast

import pytest

from core.errors import UserError
from rl.data.config import DataConfig
from rl.data.datasets import load_splits
from rl.data.humaneval_task import INSTRUCTION, problems
from rl.data.task import make_task


def _ids(rows) -> list[str]:
    return [r["meta"]["task_id"] for r in rows]


def test_164_problems_split_by_a_seeded_shuffle():
    train, val = load_splits(DataConfig(task="humaneval", val_size=20, seed=0))
    assert len(train) == 144 and len(val) == 20
    assert sorted(_ids(train) + _ids(val)) == sorted(f"HumanEval/{i}" for i in range(164))
    assert not set(_ids(train)) & set(_ids(val))
    assert load_splits(DataConfig(task="humaneval", val_size=20, seed=0)) == (train, val)
    _, other = load_splits(DataConfig(task="humaneval", val_size=20, seed=1))
    assert set(_ids(other)) != set(_ids(val))
    assert _ids(val) == sorted(_ids(val), key=lambda t: int(t.split("/")[1]))  # kept in task order


def test_rows_meet_the_code_sample_schema():
    train, val = load_splits(DataConfig(task="humaneval", val_size=10))
    by_id = {r["meta"]["task_id"]: r for r in train + val}
    for problem in problems():
        row = by_id[problem["task_id"]]
        assert row["kind"] == "code" and row["answer"] == "" and row["meta"] == {"task_id": problem["task_id"]}
        assert row["tests"] == problem["test"] and row["entry_point"] == problem["entry_point"]
        assert "def check(candidate)" in row["tests"]
        assert row["prompt"].startswith(INSTRUCTION + "```python\n") and row["prompt"].endswith("\n```")
        code = row["prompt"][len(INSTRUCTION) + len("```python\n"):-len("```")]
        assert code.strip("\n") == problem["prompt"].strip("\n")
        assert f"def {problem['entry_point']}(" in code
        for part in (row.get("test_imports", ""), row["tests"]):
            ast.parse(part)
    assert by_id["HumanEval/0"]["test_imports"] == "from typing import List"
    assert "def poly(" in by_id["HumanEval/32"]["test_imports"]  # check() calls the prompt's poly
    assert "def encode_cyclic(" in by_id["HumanEval/38"]["test_imports"]
    assert "def decode_cyclic" not in by_id["HumanEval/38"]["test_imports"]  # the entry point is the answer
    assert "test_imports" not in by_id["HumanEval/2"]  # truncate_number's prompt has nothing else
    assert make_task(DataConfig(task="humaneval", val_size=10)).reward_kinds() == ("code",)


def test_a_val_size_that_leaves_no_training_rows_is_one_line():
    with pytest.raises(UserError, match=r"data.val_size=164 leaves no training rows .* \(at most 163\)"):
        load_splits(DataConfig(task="humaneval", val_size=164))
    with pytest.raises(UserError, match="val_size=200"):
        load_splits(DataConfig(task="humaneval"))  # the default is arith's 200
    with pytest.raises(ValueError, match="train_size is only read with task 'arith' or 'reasoning_gym'"):
        DataConfig(task="humaneval", train_size=100)


def test_canonical_solutions_pass_in_the_sandbox_and_stubs_fail():
    """The rows' tests, entry points and test_imports, run by the code reward:
    HumanEval's own solutions pass (the three whose check calls a helper the
    prompt defines among them); the bare prompt, whose function has no body
    but its docstring, fails."""
    from rewards.config import RewardsConfig
    from rewards.scorer import Scorer
    from rl.data.humaneval_task import problems, to_row

    chosen = [p for p in problems() if int(p["task_id"].split("/")[1]) in (0, 32, 38, 50, 101, 163)]
    samples = []
    for p in chosen:
        row = to_row(p)
        base = {k: row.get(k) for k in ("kind", "answer", "tests", "entry_point", "test_imports")}
        samples.append({**base, "response": f"```python\n{p['prompt']}{p['canonical_solution']}```"})
        samples.append({**base, "response": f"```python\n{p['prompt']}    pass\n```"})
    scorer = Scorer(RewardsConfig(timeout_s=20.0, cache_size=0, code_scoring="all"))
    try:
        results = scorer.score_items(samples)
    finally:
        scorer.close()
    assert [r.masked for r in results] == [False] * len(samples), [r.details for r in results]
    assert [r.score for r in results[0::2]] == [1.0] * len(chosen), [r.details for r in results[0::2]]
    assert [r.score for r in results[1::2]] == [0.0] * len(chosen)

"""`data.task: file`: the prompt-file layouts (ours, TRL's conversational,
verl's, data.columns) in JSONL and Parquet, and their one-line errors."""
from __future__ import annotations

import json

import datasets
import pytest

from core.errors import UserError
from rl.data.config import DataConfig
from rl.data.datasets import load_splits
from rl.data.file_layouts import load_prompts
from rl.data.task import make_task

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]


def _write(tmp_path, rows, fmt, name="p"):
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


@pytest.fixture(params=["jsonl", "parquet"])
def fmt(request):
    return request.param


def test_ours(tmp_path, fmt):
    rows = [{"prompt": "1+2=", "answer": 3, "kind": "math", "meta": {"difficulty": 1}, "source": "gsm"},
            {"prompt": "x", "answer": 4, "kind": None, "meta": None, "source": "mine"}]
    got = load_prompts(_write(tmp_path, rows, fmt))
    assert got == [{"prompt": "1+2=", "answer": "3", "kind": "math", "meta": {"source": "gsm", "difficulty": 1}},
                   {"prompt": "x", "answer": "4", "kind": "math", "meta": {"source": "mine"}}]


def test_code_rows_keep_their_tests_and_need_no_answer(tmp_path, fmt):
    rows = [{"prompt": "Write f.", "kind": "code", "tests": ["assert f(2) == 4"], "entry_point": "f",
             "test_imports": "import math"}]
    got = load_prompts(_write(tmp_path, rows, fmt))
    assert got == [{"prompt": "Write f.", "answer": "", "kind": "code", "tests": ["assert f(2) == 4"],
                    "entry_point": "f", "test_imports": "import math"}]


def test_trl_conversational(tmp_path, fmt):
    rows = [{"prompt": MESSAGES, "answer": "5", "level": 2},
            {"prompt": [{"role": "user", "content": "What is 1+1?"}], "answer": "2", "level": 1}]
    got = load_prompts(_write(tmp_path, rows, fmt))
    assert got[0] == {"prompt": MESSAGES, "answer": "5", "kind": "math", "meta": {"level": 2}}
    assert got[1]["prompt"] == [{"role": "user", "content": "What is 1+1?"}] and got[1]["meta"] == {"level": 1}


def test_verl(tmp_path, fmt):
    row = {"data_source": "openai/gsm8k", "prompt": [{"role": "user", "content": "Janet has 3 apples..."}],
           "ability": "math", "reward_model": {"style": "rule", "ground_truth": "72"},
           "extra_info": {"split": "train", "index": 7}}
    got = load_prompts(_write(tmp_path, [row], fmt))
    assert got == [{"prompt": row["prompt"], "answer": "72", "kind": "math",
                    "meta": {"data_source": "openai/gsm8k", "ability": "math",
                             "extra_info": {"split": "train", "index": 7},
                             "reward_model": {"style": "rule", "ground_truth": "72"}}}]


def test_columns_mapping_with_a_dotted_path(tmp_path, fmt):
    rows = [{"question": "Capital of France?", "solution": "Paris", "topic": "geo"}]
    path = _write(tmp_path, rows, fmt)
    got = load_prompts(path, {"prompt": "question", "answer": "solution"})
    assert got == [{"prompt": "Capital of France?", "answer": "Paris", "kind": "math", "meta": {"topic": "geo"}}]
    nested = _write(tmp_path, [{"q": "2*4?", "target": {"value": 8, "unit": None}, "info": {"a": 1}}], fmt, "n")
    got = load_prompts(nested, {"prompt": "q", "answer": "target.value", "meta": "info"})
    assert got == [{"prompt": "2*4?", "answer": "8", "kind": "math", "meta": {"target": {"value": 8, "unit": None},
                                                                              "a": 1}}]


def test_a_file_that_fits_no_layout_names_the_missing_column(tmp_path, fmt):
    path = _write(tmp_path, [{"question": "q?", "solution": "a"}], fmt)
    with pytest.raises(UserError) as err:
        load_prompts(path)
    line = str(err.value)
    assert "\n" not in line and "no column 'prompt'" in line and "found: question, solution" in line
    with pytest.raises(UserError, match=r"no column 'answer' nor 'reward_model.ground_truth' \(found: prompt"):
        load_prompts(_write(tmp_path, [{"prompt": "q?", "solution": "a"}], fmt, "b"))
    with pytest.raises(UserError, match=r"no column 'query' \(data.columns.prompt; found: question, solution\)"):
        load_prompts(path, {"prompt": "query", "answer": "solution"})
    with pytest.raises(UserError, match=r"row 0: no 'solution.text' \(stopped at 'text'\)"):
        load_prompts(path, {"prompt": "question", "answer": "solution.text"})


@pytest.mark.parametrize("prompt, problem", [
    ("", "'prompt' is empty text"),
    ([], "non-empty list"),
    ([{"role": "user"}], "message 0 must have text 'role' and 'content'"),
    ([{"role": "system", "content": "hi"}], "no 'user' turn"),
])
def test_bad_prompts_are_one_line_naming_the_row(tmp_path, prompt, problem):
    rows = [{"prompt": "fine", "answer": "1"}, {"prompt": prompt, "answer": "2"}]
    if isinstance(prompt, list):  # one column holds one type: every row a conversation
        rows[0]["prompt"] = [{"role": "user", "content": "fine"}]
    with pytest.raises(UserError, match=f"bad.jsonl, row 1: .*{problem}") as err:
        load_prompts(_write(tmp_path, rows, "jsonl", "bad"))
    assert "\n" not in str(err.value)


def test_a_meta_column_must_be_a_mapping(tmp_path):
    path = _write(tmp_path, [{"prompt": "q", "answer": "a", "meta": "oops"}], "jsonl")
    with pytest.raises(UserError, match="row 0: 'meta' must be a mapping"):
        load_prompts(path)


def test_file_task_splits_and_kinds(tmp_path, fmt):
    rows = [{"prompt": [{"role": "user", "content": f"{i}+1?"}], "answer": i + 1,
             "kind": "code" if i == 3 else "math", "tests": "assert True" if i == 3 else None} for i in range(30)]
    path = _write(tmp_path, rows, fmt)
    task = make_task(DataConfig(task="file", train_path=str(path), val_size=5, seed=1))
    train, val = task.splits()
    assert len(train) == 25 and len(val) == 5 and task.reward_kinds() == ("code", "math")
    assert not {r["answer"] for r in train} & {r["answer"] for r in val}
    val_path = _write(tmp_path, [{"question": "v?", "solution": "v"}] * 3, fmt, "val")
    train_path = _write(tmp_path, [{"question": "t?", "solution": "t"}] * 4, fmt, "train")
    cfg = DataConfig(task="file", train_path=str(train_path), val_path=str(val_path), val_size=2,
                     columns={"prompt": "question", "answer": "solution"})
    train, val = load_splits(cfg)
    assert [r["prompt"] for r in train] == ["t?"] * 4 and [r["answer"] for r in val] == ["v", "v"]
    assert DataConfig(**json.loads(cfg.model_dump_json())) == cfg


def test_file_only_settings_are_refused_with_other_tasks():
    with pytest.raises(ValueError, match="columns is only read with task 'file'"):
        DataConfig(columns={"prompt": "question"})
    with pytest.raises(ValueError, match="Input should be 'prompt', 'answer'"):
        DataConfig(task="file", train_path="x.jsonl", columns={"question": "prompt"})
    with pytest.raises(ValueError, match="digits_min is only read with task 'arith'"):
        DataConfig(task="file", train_path="x.jsonl", digits_min=3)
    with pytest.raises(ValueError, match="train_path is only read with task 'file'"):
        DataConfig(task="reasoning_gym", reasoning_gym="chain_sum", train_path="x.jsonl")

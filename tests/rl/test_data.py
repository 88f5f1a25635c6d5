"""The arithmetic task, prompt files and prompt rendering (the sampler: test_sampler.py)."""
from __future__ import annotations

import json
import random

import pytest

from rl.base.tokenizer import build_tokenizer
from rl.data import arith
from rl.data.config import DataConfig
from rl.data.datasets import arith_difficulty, load_prompts, load_splits, render_prompt
from core.errors import UserError


def test_clean_working_boxes_the_true_sum():
    rng = random.Random(0)
    for _ in range(2000):
        a, b = rng.randint(10, 9999), rng.randint(10, 9999)
        steps, value = arith.working(a, b)
        assert value == a + b
        assert arith.is_correct(arith.format_response(steps, value), str(a + b))


def test_working_format_matches_the_example():
    steps, value = arith.working(347, 2861)
    assert arith.format_response(steps, value) == (
        "<think>7+1+0=8,4+6+0=10,3+8+1=12,0+2+1=3</think>\\boxed{3208}")
    steps, value = arith.working(95, 17)  # the last carry is the leading digit
    assert steps == ["5+7+0=12", "9+1+1=11"] and value == 112


def test_noise_rates_are_as_configured():
    examples = arith.make_sft_examples(4000, seed=3, carry_drop=0.65, check_rate=0.3)
    # Each step whose sum reaches 10 (except the last) owes the next step +1.
    owed = kept = 0
    for ex in examples:
        body = ex["response"].split("<think>")[1].split("</think>")[0]
        steps = [s for s in body.split(",") if not s.startswith("check")]
        for prev, nxt in zip(steps, steps[1:]):
            if int(prev.split("=")[1]) >= 10:
                owed += 1
                kept += nxt.split("+")[2].startswith("1")
    assert owed > 2000
    assert abs(1 - kept / owed - 0.65) < 0.03
    checks = sum(",check:" in ex["response"] for ex in examples) / len(examples)
    assert abs(checks - 0.3) < 0.03
    # The boxed answer follows the (noisy) working: right exactly when no carry was dropped.
    assert 0.35 < sum(arith.is_correct(e["response"], e["answer"]) for e in examples) / 4000 < 0.55


def test_generators_are_deterministic_and_sized():
    assert arith.make_prompts(50, seed=1) == arith.make_prompts(50, seed=1)
    assert arith.make_prompts(50, seed=1) != arith.make_prompts(50, seed=2)
    assert arith.make_sft_examples(20, seed=1) == arith.make_sft_examples(20, seed=1)
    for p in arith.make_prompts(300, seed=5):
        a, b = p["prompt"].rstrip("=").split("+")
        assert 2 <= len(a) <= 4 and 2 <= len(b) <= 4 and int(a) + int(b) == int(p["answer"])
        assert p["kind"] == "math"


def test_validation_split_is_fixed_and_disjoint():
    val = arith.validation_prompts(200)
    assert val == arith.validation_prompts(200) and len({v["prompt"] for v in val}) == 200
    assert arith.validation_prompts(50) == val[:50]
    pool = {v["prompt"] for v in arith.validation_prompts(arith.VAL_POOL)}
    train = {p["prompt"] for p in arith.make_prompts(20000, seed=0)}
    train |= {e["prompt"] for e in arith.make_sft_examples(5000, seed=0)}
    assert not train & pool


def test_boxed_answer_uses_the_last_box_and_integer_compare():
    assert arith.boxed_answer("\\boxed{1}x\\boxed{ 042}") == " 042"
    assert arith.is_correct("\\boxed{1}x\\boxed{ 042}", "42")
    assert not arith.is_correct("\\boxed{4a}", "4")
    assert not arith.is_correct("no box", "4")


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_prompts_jsonl_and_parquet(tmp_path):
    rows = [{"prompt": "1+2=", "answer": 3, "meta": {"src": "x"}}, {"prompt": "2+2=", "answer": "4", "kind": "math"}]
    got = load_prompts(_write_jsonl(tmp_path / "p.jsonl", rows))
    assert [r["answer"] for r in got] == ["3", "4"] and got[0]["kind"] == "math"
    import datasets

    datasets.Dataset.from_list([{"prompt": "5+5=", "answer": "10"}]).to_parquet(str(tmp_path / "p.parquet"))
    assert load_prompts(tmp_path / "p.parquet") == [{"prompt": "5+5=", "answer": "10", "kind": "math"}]


def test_bad_prompt_files_raise_user_error_naming_them(tmp_path):
    with pytest.raises(UserError, match="nope.jsonl"):
        load_prompts(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(UserError, match="empty.jsonl.*empty"):
        load_prompts(tmp_path / "empty.jsonl")
    bad = _write_jsonl(tmp_path / "noanswer.jsonl", [{"prompt": "1+1="}])
    with pytest.raises(UserError, match="noanswer.jsonl.*'answer'"):
        load_prompts(bad)


def test_file_task_holds_out_validation_rows(tmp_path):
    rows = [{"prompt": f"{i}+1=", "answer": i + 1} for i in range(30)]
    path = _write_jsonl(tmp_path / "t.jsonl", rows)
    train, val = load_splits(DataConfig(task="file", train_path=str(path), val_size=5, seed=1))
    assert len(train) == 25 and len(val) == 5
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in val}
    with pytest.raises(UserError, match="val_size"):
        load_splits(DataConfig(task="file", train_path=str(path), val_size=30))


def test_data_config_rejects_impossible_values():
    with pytest.raises(ValueError):
        DataConfig(digits_min=5, digits_max=3)
    with pytest.raises(ValueError):
        DataConfig(task="file")
    with pytest.raises(ValueError):
        DataConfig(bogus=1)
    train, val = load_splits(DataConfig(train_size=100, val_size=10))
    assert len(train) == 100 and val == arith.validation_prompts(10)


def test_arith_rows_carry_their_carry_count_as_difficulty():
    assert arith_difficulty("10+10=") == 0
    assert arith_difficulty("95+17=") == 1  # 5+7=12 carries; 9+1+1=11 only writes the leading digit
    assert arith_difficulty("347+2861=") == 2  # 4+6=10 and 3+8+1=12 carry
    assert arith_difficulty("999+1=") == 2
    train, _ = load_splits(DataConfig(train_size=50, val_size=10))
    assert all(r["meta"] == {"difficulty": arith_difficulty(r["prompt"])} for r in train)
    assert {k: v for k, v in train[0].items() if k != "meta"} == arith.make_prompts(50, seed=0)[0]


def test_render_prompt_uses_the_chat_template():
    tok = build_tokenizer()
    ids = render_prompt(tok, "347+2861=")
    assert tok.decode(ids) == "<|user|>347+2861=<|assistant|>"
    assert ids[0] == tok.convert_tokens_to_ids("<|user|>")
    assert ids[-1] == tok.convert_tokens_to_ids("<|assistant|>")
    assert len(ids) == len("347+2861=") + 2


def test_working_with_errors_placed_by_column():
    """The judge's near misses: a dropped carry, a spurious one, a shifted column sum."""
    # 347+2861 with the carry out of the tens column dropped: 3+8+0=11, then 0+2+1=3 -> 3108
    assert arith.working(347, 2861, drop={1}) == (["7+1+0=8", "4+6+0=10", "3+8+0=11", "0+2+1=3"], 3108)
    steps, value = arith.working(347, 2861, extra={0})
    assert steps[1] == "4+6+1=11" and value == 3218
    assert arith.working(347, 2861, sum_off={0: -1}) == (["7+1+0=7", "4+6+0=10", "3+8+1=12", "0+2+1=3"], 3207)
    assert arith.working(95, 17, drop={1}) == arith.working(95, 17)  # no carry after the last column

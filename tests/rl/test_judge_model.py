"""The tiny judge: its prompt contract, its tokenizer, the corpus's labels and
the cached build with its measurement against the math verifier.

The real `tiny-judge` build takes minutes; the build test trains a tiny spec
(one narrow layer, a few SFT steps) once per session, sampling the policy from
the `tiny_random_model` fixture (a real model, random weights), and checks that
what the build wrote is what the verifier and the saved judge say.
"""
from __future__ import annotations

import argparse
import json
import random

import pytest

from rewards import judge_format as jf
from rl.base import judge_data
from rl.base.config import ArchConfig
from rl.base.judge_eval import rates
from rl.base.judge_build import EVAL_FILE, EVAL_ITEMS_FILE, build_judge, judge_folder, judge_path
from rl.base.judge_spec import JUDGE_SPECS, JudgeSpec
from rl.base.judge_tokenizer import build_judge_tokenizer, load_judge_tokenizer
from core.errors import UserError

CATEGORIES = ["correct", "near_miss", "fooling", "policy", "injected"]


@pytest.fixture(scope="session")
def reward():
    return judge_data.verifier()


@pytest.fixture(scope="session")
def tiny_judge(tmp_path_factory, tiny_random_model):
    spec = JudgeSpec(name="test-judge", policy_base=tiny_random_model,
                     arch=ArchConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2,
                                     ffn_size=64, max_positions=512),
                     corpus_size=48, sft_steps=4, batch_size=8, warmup_steps=1, threads=1,
                     policy_questions=2, eval_items=12, eval_grm_items=3)
    cache = tmp_path_factory.mktemp("judges")
    return spec, cache, build_judge(spec, cache_dir=cache)


def test_prompts_and_parsers():
    p = jf.verify_prompt("12+34=", "\\boxed{46}")
    assert p == "Question: 12+34=\nResponse:\n> \\boxed{46}\nIs the answer correct (Yes/No)?"
    g = jf.grm_prompt("12+34=", ["a", "b"])
    assert g.startswith("Question: 12+34=\n[Response 1]\n> a\n[Response 2]\n> b\n")
    assert jf.parse_grm_scores("Analysis: x\nScores: \\boxed{10, 2}", 2) == [10, 2]
    assert jf.parse_grm_scores("Scores: \\boxed{10, 2}", 1) is None  # wrong count
    assert jf.parse_grm_scores("Scores: \\boxed{11}", 1) is None  # out of range
    assert (jf.parse_verdict(" Yes"), jf.parse_verdict(" No"), jf.parse_verdict(" Now")) == (True, False, None)
    long = "y" * 5 + "x" * jf.MAX_RESPONSE_CHARS
    assert jf.truncate_response(long) == jf.TRUNCATION_MARKER + "x" * jf.MAX_RESPONSE_CHARS  # the tail
    assert jf.truncate_response("short") == "short"


def test_tokenizer_spells_prompts_with_one_token_verdicts():
    tok = build_judge_tokenizer()
    yes, no = jf.first_token_ids(tok)
    assert yes != no
    prompt = jf.grm_prompt("347+2861=", ["<think>7+1+0=8</think>\\boxed{3208}", "Thought process:\nok"])
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == prompt and tok.unk_token_id not in ids
    # the instruction is one token; "Question: " one more; the question 9 characters
    assert ids[:10] == tok("Question: 347+2861=", add_special_tokens=False)["input_ids"]
    assert len(tok(jf.GRM_INSTRUCTION, add_special_tokens=False)["input_ids"]) == 1
    assert tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False) == prompt


def test_near_misses_hand_computed(reward):
    # 347+2861 with the carry out of the tens column dropped: 3+8+0=11, then 0+2+1=3 -> 3108
    steps, value = judge_data.arith.working(347, 2861, drop={1})
    assert steps == ["7+1+0=8", "4+6+0=10", "3+8+0=11", "0+2+1=3"] and value == 3108
    steps, value = judge_data.arith.working(347, 2861, extra={0})
    assert steps[1] == "4+6+1=11" and value == 3218
    rng = random.Random(0)
    for kind in judge_data.NEAR_MISS_KINDS:
        for _ in range(20):
            response = judge_data.near_miss(347, 2861, kind, rng)
            right = judge_data.judged_correct(reward, response, "3208")
            assert right == (kind == "working_wrong_answer_right"), (kind, response)
            if kind == "working_wrong_answer_right":
                assert response.endswith("\\boxed{3208}")
                assert "7+1+0=8,4+6+0=10,3+8+1=12,0+2+1=3" not in response  # the working is wrong


def test_every_fooling_response_is_labelled_no(reward):
    for text in judge_data.FOOLING + judge_data.FOOLING_MORE:
        assert not judge_data.judged_correct(reward, text, "46")
        assert judge_data.verify_row("12+34=", text, False)["completion"] == jf.NO_TEXT
    rows = judge_data.sft_rows(400, seed=3, verify_share=1.0, policy_share=0.0, policy={}, reward=reward)
    seen = set()
    for row in rows:
        block = row["prompt"].split(jf.RESPONSE_HEADER + "\n", 1)[1].rsplit("\n" + jf.VERIFY_QUESTION, 1)[0]
        response = block[len(jf.QUOTE):].replace("\n" + jf.QUOTE, "\n")
        # over-long with the answer first: the cut (at the head) takes the answer away
        if response in judge_data.FOOLING or (jf.TRUNCATION_MARKER in response and "\\boxed" not in response):
            assert row["completion"] == jf.NO_TEXT, response
            seen.add(response if response in judge_data.FOOLING else "over-long")
    assert seen == set(judge_data.FOOLING) | {"over-long"}
    assert {r["completion"] for r in rows} == {jf.YES_TEXT, jf.NO_TEXT}


def test_grm_completion_scores_each_response():
    right = judge_data.correct_response(347, 2861, random.Random(0))
    text = judge_data.grm_completion(347, 2861, [right, "<think>x</think>\\boxed{3108}", ":"],
                                     [True, False, False])
    assert "so 347+2861=3208." in text
    assert "Response 1: 3208, right. Response 2: 3108, wrong. Response 3: no answer, wrong." in text
    assert jf.parse_grm_scores(text, 3) == [10, 2, 1]


def test_spec_hash_and_unknown_spec(tmp_path):
    a = JudgeSpec(name="x")
    assert a.content_hash("1") == JudgeSpec(name="x").content_hash("1")
    assert a.content_hash("1") != JudgeSpec(name="x", lr=1e-3).content_hash("1")
    assert "tiny-judge" in JUDGE_SPECS
    assert judge_folder("tiny-judge", tmp_path).parent == tmp_path
    with pytest.raises(UserError, match="unknown judge spec 'nope'"):
        build_judge("nope", cache_dir=tmp_path)


def test_build_writes_a_loadable_judge_and_its_measurement(tiny_judge, reward):
    from transformers import AutoModelForCausalLM

    spec, cache, path = tiny_judge
    assert path == judge_folder(spec, cache) and (path / "model.safetensors").is_file()
    assert not list(cache.glob(".*tmp*"))
    tok = load_judge_tokenizer(path)
    assert jf.first_token_ids(tok) == jf.first_token_ids(build_judge_tokenizer())
    prompt = jf.grm_prompt("12+34=", ["Let me solve this step by step.\n\\boxed{46}"])
    assert tok(prompt)["input_ids"] == build_judge_tokenizer()(prompt)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.vocab_size == 128 and model.config.hidden_size == 32
    result = json.loads((path / EVAL_FILE).read_text())
    items = json.loads((path / EVAL_ITEMS_FILE).read_text())
    assert sorted(items) == sorted(CATEGORIES) and all(len(items[c]) == 12 for c in CATEGORIES)
    # every recorded verdict is the verifier's on that item
    for rows in items.values():
        for it in rows:
            assert it["correct"] == judge_data.judged_correct(reward, it["response"], it["answer"])
    assert result["verify"]["correct"]["verifier_correct"] == 12
    assert result["verify"]["fooling"]["verifier_correct"] == 0
    # near misses cycle through the six kinds; only the 6th (indices 5, 11) is right
    assert result["verify"]["near_miss"]["verifier_correct"] == 2
    assert [it["response"] for it in items["fooling"][:4]] == judge_data.FOOLING
    assert result["grm"]["policy"]["n"] == 3


def test_measurement_is_the_saved_judge_against_the_verifier(tiny_judge):
    """Recompute the Yes/No numbers from the saved judge and the saved items."""
    from transformers import AutoModelForCausalLM

    from rl.base.judge_eval import verify_p_yes

    _, _, path = tiny_judge
    tok = load_judge_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    result = json.loads((path / EVAL_FILE).read_text())
    items = json.loads((path / EVAL_ITEMS_FILE).read_text())
    for category in CATEGORIES:
        p_yes = verify_p_yes(model, tok, items[category])
        truth = [it["correct"] for it in items[category]]
        again = rates([p > 0.5 for p in p_yes], truth)
        saved = result["verify"][category]
        assert {k: saved[k] for k in again} == again
        assert saved["mean_p_yes"] == pytest.approx(sum(p_yes) / len(p_yes), abs=1e-4)


def test_rates_hand_computed():
    r = rates([True, True, False, False, True], [True, False, False, False, False])
    # 5 items, 1 right by the verifier; the judge accepts it and 2 of the 4 wrong ones
    assert r == {"n": 5, "verifier_correct": 1, "accuracy": 0.6,
                 "false_positive_rate": 0.5, "false_negative_rate": 0.0}


def test_cached_build_is_reused_and_cli_prints_it(tiny_judge, capsys):
    from rl.base.cli import judge_handler

    spec, cache, path = tiny_judge
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert judge_path(cache_dir=cache, spec=spec) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    import rl.base.judge_spec as judge_spec

    judge_spec.JUDGE_SPECS["test-judge"] = spec
    try:
        assert judge_handler(argparse.Namespace(name="test-judge", cache_dir=str(cache), force=False)) == 0
    finally:
        del judge_spec.JUDGE_SPECS["test-judge"]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(path) and out[1].startswith("verify: correct acc ")

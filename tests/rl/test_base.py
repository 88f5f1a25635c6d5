"""Tokenizer, spec hashing, the cached base builder, the committed base,
resolve and the CLI handler.

The real `tiny-arith` build takes minutes (and its weights depend on the
CPU): the default suite checks the committed base against the spec and
builds a tiny spec (a narrow one-layer model, a handful of SFT steps) end to
end, once through `build_base` and once through `asymptote base build`; the
full rebuild runs only with ASYMPTOTE_FULL_TESTS=1.
"""
from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import load_file

from rl.base import build as base_build
from rl.base.build import (BUILD_VERSION, EVAL_FILE, SPEC_FILE, base_path, build_base, committed_path,
                           evaluate_base, resolve_base)
from rl.base.cli import build_handler, register
from rl.base.config import ArchConfig
from rl.base.spec import SPECS, BaseSpec
from rl.base.tokenizer import BOXED, THINK_CLOSE, THINK_OPEN, build_tokenizer
from core.errors import UserError

TINY = BaseSpec(name="test-tiny", arch=ArchConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                   num_kv_heads=2, ffn_size=64, max_positions=64),
                corpus_size=256, sft_steps=6, batch_size=16, warmup_steps=1,
                eval_prompts=8, eval_k=2)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    cache = tmp_path_factory.mktemp("bases")
    return cache, build_base(TINY, cache_dir=cache)


def test_tokenizer_round_trip_and_markers():
    tok = build_tokenizer()
    text = f"{THINK_OPEN}7+1+0=8,check:8{THINK_CLOSE}{BOXED}3208}}"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) == len(text) - (len(THINK_OPEN) - 1) - (len(THINK_CLOSE) - 1) - (len(BOXED) - 1)
    assert max(ids) < 64


def test_chat_template_renders_prompt_and_response():
    tok = build_tokenizer()
    msgs = [{"role": "user", "content": "1+2="}, {"role": "assistant", "content": "x"}]
    assert tok.apply_chat_template(msgs, tokenize=False) == "<|user|>1+2=<|assistant|>x<|end|>"
    assert tok.eos_token == "<|end|>"


def test_spec_hash_tracks_content_and_version():
    a = BaseSpec(name="x")
    assert a.content_hash("1") == BaseSpec(name="x").content_hash("1")
    assert a.content_hash("1") != BaseSpec(name="x", lr=1e-3).content_hash("1")
    assert a.content_hash("1") != a.content_hash("2")
    assert "tiny-arith" in SPECS


def test_build_saves_a_loadable_base_with_eval(tiny_base):
    cache, path = tiny_base
    assert path == base_path(TINY, cache) and path.name.startswith("test-tiny-")
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    gen = json.loads((path / "generation_config.json").read_text())
    assert gen["eos_token_id"] == build_tokenizer().eos_token_id
    ev = json.loads((path / EVAL_FILE).read_text())
    assert ev["n_prompts"] == 8 and ev["k"] == 2 and 0 <= ev["mean_at_k"] <= ev["pass_at_k"] <= 1
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_cache_hit_returns_same_path_without_training(tiny_base, monkeypatch):
    cache, path = tiny_base
    monkeypatch.setattr(base_build, "_train", lambda *a: pytest.fail("retrained a cached base"))
    assert build_base(TINY, cache_dir=cache) == path


def test_training_moves_the_weights_from_the_init(tiny_base):
    _, path = tiny_base
    from rl.base.model import build_model

    trained = load_file(path / "model.safetensors")
    init = build_model(TINY.arch, build_tokenizer(), seed=TINY.seed).state_dict()
    assert not torch.equal(init["model.norm.weight"], trained["model.norm.weight"])


def test_training_lowers_the_response_loss(tiny_base):
    _, path = tiny_base
    from transformers import AutoModelForCausalLM

    from rl.base.model import build_model
    from rl.data import arith

    tok = build_tokenizer()
    ex = arith.make_sft_examples(16, seed=99)
    prompt_ids = [tok.apply_chat_template([{"role": "user", "content": e["prompt"]}],
                                          add_generation_prompt=True, tokenize=True,
                                          return_dict=False) for e in ex]
    full = [p + tok(e["response"] + tok.eos_token)["input_ids"] for p, e in zip(prompt_ids, ex)]

    def response_loss(model) -> float:
        total = 0.0
        for p, ids in zip(prompt_ids, full):
            labels = torch.tensor([-100] * len(p) + ids[len(p):])
            with torch.no_grad():
                total += model(torch.tensor([ids]), labels=labels[None]).loss.item()
        return total / len(full)

    trained = response_loss(AutoModelForCausalLM.from_pretrained(path))
    init = response_loss(build_model(TINY.arch, tok, seed=TINY.seed))
    assert trained < init - 0.3


def test_resolve_base(tiny_base, tmp_path):
    _, path = tiny_base
    assert resolve_base(str(path)) == path
    with pytest.raises(UserError, match="no-such-model"):
        resolve_base("no-such-model")
    with pytest.raises(UserError, match="unknown base spec 'nope'"):
        build_base("nope", cache_dir=tmp_path)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ASYMPTOTE_CACHE", str(tmp_path))
    assert base_path("tiny-arith").parent == tmp_path / "bases"


def test_cli_build_is_a_real_build_with_the_same_weights_and_plain_progress(tiny_base, monkeypatch,
                                                                           capsys, tmp_path):
    """`asymptote base build` into an empty cache trains the spec again: the
    same weights as the first build, its numbers printed, and (stderr is not
    a terminal here) plain progress lines rather than a bar."""
    _, first = tiny_base
    monkeypatch.setitem(SPECS, TINY.name, TINY)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["base", "build", TINY.name, "--cache-dir", str(tmp_path)])
    assert args.func is build_handler and args.func(args) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0] == str(base_path(TINY, tmp_path)) and "mean@2" in out[1] and "pass@2" in out[1]
    assert f"sft: step {TINY.sft_steps}/{TINY.sft_steps}" in captured.err and "\r" not in captured.err
    a, b = load_file(first / "model.safetensors"), load_file(base_path(TINY, tmp_path) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name, mean_at_k", [("tiny-arith", 0.2313), ("tiny-calc", 0.1313)])
def test_committed_base_matches_the_spec_in_code(name, mean_at_k):
    """A spec or BUILD_VERSION change without a rebuilt committed folder fails here."""
    spec = SPECS[name]
    path = committed_path(name)
    assert path is not None, f"no committed base rl/base/weights/{name}-{spec.content_hash(BUILD_VERSION)}"
    assert path.name == f"{name}-{spec.content_hash(BUILD_VERSION)}"
    assert json.loads((path / SPEC_FILE).read_text()) == {"build_version": BUILD_VERSION, **spec.model_dump()}
    ev = json.loads((path / EVAL_FILE).read_text())
    assert ev["n_prompts"] == spec.eval_prompts and ev["k"] == spec.eval_k and ev["mean_at_k"] == mean_at_k
    assert (path / "model.safetensors").stat().st_size > 2_000_000


def test_resolve_prefers_the_committed_base_and_builds_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("ASYMPTOTE_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setattr(base_build, "build_base", lambda *a, **k: pytest.fail("built a committed base"))
    assert resolve_base("tiny-arith") == committed_path("tiny-arith")
    assert not list(tmp_path.iterdir())


def test_resolve_uses_the_cache_for_a_spec_without_a_committed_base(tiny_base, monkeypatch):
    cache, path = tiny_base
    monkeypatch.setitem(SPECS, TINY.name, TINY)
    assert committed_path(TINY) is None
    monkeypatch.setattr(base_build, "_train", lambda *a: pytest.fail("retrained a cached base"))
    assert resolve_base(TINY.name, cache_dir=cache) == path


@pytest.mark.full
def test_full_rebuild_of_the_default_base(tmp_path):
    """The real tiny-arith build (minutes): the committed folder's name, and a
    base as good as the committed one within what another CPU gives (held-out
    mean@16 0.23 to 0.38 on three machines)."""
    path = build_base("tiny-arith", cache_dir=tmp_path)
    assert path.name == committed_path("tiny-arith").name
    ev = json.loads((path / EVAL_FILE).read_text())
    assert 0.15 <= ev["mean_at_k"] <= 0.5 and ev["pass_at_k"] >= 0.5


def test_evaluate_scores_a_model_that_copies_the_corpus(tiny_base, monkeypatch):
    """With generate replaced by the clean working, the scorer must report 1.0."""
    _, path = tiny_base
    from transformers import Qwen2ForCausalLM

    from rl.data import arith

    tok = build_tokenizer()
    answers = {}

    def fake_generate(self, input_ids, attention_mask, num_return_sequences=1, **_):
        rows = []
        for row in input_ids:
            prompt = tok.decode(row[row != tok.pad_token_id]).split("<|user|>")[1].split("<|assistant|>")[0]
            a, b = map(int, prompt.rstrip("=").split("+"))
            answers[prompt] = a + b
            response = arith.format_response(*arith.working(a, b)) + tok.eos_token
            rows += [row.tolist() + tok(response)["input_ids"]] * num_return_sequences
        width = max(map(len, rows))
        return torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])

    monkeypatch.setattr(Qwen2ForCausalLM, "generate", fake_generate)
    ev = evaluate_base(path, n_prompts=10, k=3)
    assert len(answers) == 10
    assert ev["greedy"] == ev["mean_at_k"] == ev["pass_at_k"] == 1.0


def test_autotokenizer_reads_the_saved_tokenizer_with_the_same_ids(tmp_path):
    """vLLM and TRL load a qwen2 folder's tokenizer through AutoTokenizer,
    which builds Qwen2Tokenizer from tokenizer.json: it must give the ids and
    the text (spaces, newlines) of the tokenizer the base was trained with."""
    from transformers import AutoTokenizer

    from rl.base.judge_tokenizer import build_judge_tokenizer
    from rl.base.model import build_model

    text = f"{THINK_OPEN}7 + 1 = 8, check: 8{THINK_CLOSE} so {BOXED}8}}"
    for name, tok in [("base", build_tokenizer()), ("judge", build_judge_tokenizer())]:
        text += "\nIs it right? Yes" if name == "judge" else ""  # the judge spells newlines and capitals
        folder = tmp_path / name
        tok.save_pretrained(folder)
        build_model(TINY.arch, build_tokenizer(), seed=0).config.save_pretrained(folder)
        auto = AutoTokenizer.from_pretrained(folder)
        ids = tok(text)["input_ids"]
        assert type(auto).__name__ == "Qwen2Tokenizer"  # the class vLLM gets for this config
        assert auto(text)["input_ids"] == ids and auto.decode(ids) == text == tok.decode(ids), name
        assert auto.eos_token_id == tok.eos_token_id and auto.pad_token_id == tok.pad_token_id


def test_a_tool_use_example_trains_on_the_model_side_only():
    """tiny-calc's SFT rows: the prompt and the calculator's reply carry no
    loss; the call, the boxed answer and EOS do, token for token as the
    engine will see the episode (each piece tokenized on its own)."""
    from rl.base.build import _with_replies_masked
    from rl.base.tokenizer import build_tokenizer

    tok = build_tokenizer()
    prompt = tok.apply_chat_template([{"role": "user", "content": "12+345="}], add_generation_prompt=True,
                                     tokenize=False)
    row = _with_replies_masked(tok, prompt, "<think>calc[12+345]=357;</think>\\boxed{357}")
    trained = tok.decode([i for i, m in zip(row["input_ids"], row["completion_mask"]) if m])
    untrained = tok.decode([i for i, m in zip(row["input_ids"], row["completion_mask"]) if not m])
    assert trained == "<think>calc[12+345]</think>\\boxed{357}<|end|>"
    assert untrained == "<|user|>12+345=<|assistant|>=357;"
    hand = _with_replies_masked(tok, prompt, "<think>5+2+0=7</think>\\boxed{7}")
    assert sum(hand["completion_mask"]) == len(tok.encode("<think>5+2+0=7</think>\\boxed{7}")) + 1

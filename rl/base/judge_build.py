"""Build, cache and measure the project's tiny judge: a generative
reward model with real signal on CPU, served by the reward hub's judge.

`build_judge("tiny-judge")` samples the tiny-arith base (real policy
responses), writes the judging corpus (`rl.base.judge_data`: correct traces,
near misses, judge-fooling and cut-off responses, responses carrying fake
judge turns, the base's samples, every one labelled by the math verifier on
the text the judge is shown), trains a fresh Qwen2 model on it with
TRL's `SFTTrainer` (prompt-completion rows, loss on the completion only),
measures it on held-out items against the verifier (`rl.base.judge_eval`,
written to `judge_eval.json`) and saves it in the standard Hugging Face
layout under `<cache>/<name>-<spec hash>`, beside the bases (the same cache
root, written under a temporary name and renamed: `rl.base.cache`).

Departures from the base build: the judge has its own tokenizer (printable
ASCII, `rl.base.judge_tokenizer`), its prompts are raw text (the judge
formats of `rewards.judge_format`, no chat roles), and the thread count is a
spec field (two by default, for a quiet 2-core machine: 5000 steps take
about 28 min there; one is more robust on a busy machine, where two threads
spin against each other), so the same spec gives the same weights.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from rl.base.build import resolve_base
from rl.base.cache import build_once, cached_folder, named_spec
from rl.base.judge_spec import JUDGE_SPECS, JudgeSpec

# Bump when a code change alters the weights a spec produces (corpus, formats,
# training loop) or the files saved beside them (the tokenizer): every cached judge is then rebuilt.
# 2: byte-level tokenizer files (AutoTokenizer read the WordLevel ones without spaces);
# 3: quoted, neutralised responses cut at the head, and fake judge turns in the corpus.
BUILD_VERSION = "3"
EVAL_FILE = "judge_eval.json"
EVAL_ITEMS_FILE = "judge_eval_items.json"  # the held-out items measured, with the verifier's verdicts
SPEC_FILE = "judge_spec.json"
DEFAULT_JUDGE = "tiny-judge"
POLICY_TRAIN_SEED = 17  # training questions the policy is sampled on (never validation)
POLICY_SAMPLES_PER_QUESTION = 8


def _spec(name_or_spec: str | JudgeSpec) -> JudgeSpec:
    return named_spec(name_or_spec, JUDGE_SPECS, "judge")


def judge_folder(spec: str | JudgeSpec = DEFAULT_JUDGE, cache_dir: str | Path | None = None) -> Path:
    """Where the judge for this spec is (or would be) cached."""
    spec = _spec(spec)
    return cached_folder(spec.name, spec.content_hash(BUILD_VERSION), cache_dir)


def judge_path(cache_dir: str | Path | None = None, spec: str | JudgeSpec = DEFAULT_JUDGE) -> Path:
    """The folder of the tiny judge (a Hugging Face model folder), built first
    when it is not cached."""
    return build_judge(spec, cache_dir=cache_dir)


def build_judge(name: str | JudgeSpec = DEFAULT_JUDGE, cache_dir: str | Path | None = None,
                force: bool = False) -> Path:
    """The folder of the named judge, training and measuring it first unless cached."""
    spec = _spec(name)
    return build_once(judge_folder(spec, cache_dir), lambda tmp: _build_into(spec, tmp, cache_dir), force)


def _build_into(spec: JudgeSpec, out: Path, cache_dir: str | Path | None) -> None:
    import torch

    from rl.base import judge_data
    from rl.base.judge_eval import evaluate_judge, sample_policy
    from rl.data import arith

    started = time.perf_counter()
    base = resolve_base(spec.policy_base, cache_dir=cache_dir)
    reward = judge_data.verifier()
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        train_questions = [r["prompt"] for r in arith.make_prompts(spec.policy_questions, POLICY_TRAIN_SEED)]
        policy_train = sample_policy(base, train_questions, POLICY_SAMPLES_PER_QUESTION, spec.seed)
        val_questions = [r["prompt"] for r in arith.validation_prompts(spec.eval_items)]
        policy_val = sample_policy(base, val_questions, 1, spec.seed + 1)
        sampled_s = time.perf_counter() - started
        rows = judge_data.sft_rows(spec.corpus_size, spec.seed, spec.verify_share, spec.policy_share,
                                   policy_train, reward)
        _sft(spec, rows, out)
        trained_s = time.perf_counter() - started - sampled_s
        items = judge_data.eval_items(spec.eval_items, policy_val, reward, seed=spec.seed + 2)
        result = evaluate_judge(out, items, spec.eval_grm_items, seed=spec.seed)
    finally:
        torch.set_num_threads(threads)
    result["policy_base"] = str(base)
    result["corpus"] = _corpus_summary(rows)
    result["seconds"] = {"policy_samples": round(sampled_s, 1), "sft": round(trained_s, 1),
                         "total": round(time.perf_counter() - started, 1)}
    (out / EVAL_FILE).write_text(json.dumps(result, indent=2) + "\n")
    (out / EVAL_ITEMS_FILE).write_text(json.dumps(items, indent=1) + "\n")
    (out / SPEC_FILE).write_text(json.dumps(
        {"build_version": BUILD_VERSION, **spec.model_dump()}, indent=2) + "\n")


def _corpus_summary(rows: list[dict]) -> dict:
    from rewards import judge_format as jf

    verify = [r for r in rows if r["completion"] in (jf.YES_TEXT, jf.NO_TEXT)]
    return {"rows": len(rows), "verify_rows": len(verify),
            "verify_yes": sum(r["completion"] == jf.YES_TEXT for r in verify),
            "grm_rows": len(rows) - len(verify)}


def _sft(spec: JudgeSpec, rows: list[dict], out: Path) -> None:
    import datasets
    import torch
    from transformers import Qwen2ForCausalLM

    from rl.base.judge_tokenizer import VOCAB_SIZE, build_judge_tokenizer
    from rl.base.model import qwen2_config
    from rl.base.sft import run_sft

    tokenizer = build_judge_tokenizer()
    config = qwen2_config(spec.arch, tokenizer)
    config.vocab_size = VOCAB_SIZE  # the judge's vocabulary, not the base's
    torch.manual_seed(spec.seed)
    model = Qwen2ForCausalLM(config)
    data = datasets.Dataset.from_dict({
        "prompt": [r["prompt"] for r in rows],
        "completion": [r["completion"] + tokenizer.eos_token for r in rows],
    })
    run_sft(model, tokenizer, data, out,
            steps=spec.sft_steps, batch_size=spec.batch_size, lr=spec.lr,
            warmup_steps=spec.warmup_steps, weight_decay=0.0, seed=spec.seed,
            max_length=spec.arch.max_positions, max_new_tokens=256)

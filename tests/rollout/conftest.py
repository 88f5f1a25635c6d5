"""Session fixtures for the rollout tests: two tiny random models saved in the
Hugging Face format, and ONE vLLM CPU engine shared by every engine test
(building an engine takes ~10-30 s; the first sampled request with log-probs
compiles sampler code).
"""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Paths of two tiny random Qwen2 models (seeds 0 and 1) with the
    project tokenizer, and the seed-1 model itself (for HF log-probs)."""
    from rl.base.config import ArchConfig
    from rl.base.model import build_model
    from rl.base.tokenizer import build_tokenizer

    tok = build_tokenizer()
    root = tmp_path_factory.mktemp("tiny")
    paths, models = [], []
    for seed in (0, 1):
        model = build_model(ArchConfig(), tok, seed=seed).eval()
        path = root / f"seed{seed}"
        model.save_pretrained(path)
        tok.save_pretrained(path)
        paths.append(str(path))
        models.append(model)
    return {"paths": paths, "models": models, "tokenizer": tok}


@pytest.fixture(scope="session")
def engine(tiny_models):
    from rollout.config import EngineConfig
    from rollout.engine import Engine

    cfg = EngineConfig(max_model_len=256, max_num_seqs=128, kv_cache_gib=1,
                       dtype="float32", threads_bind="nobind", seed=0)
    eng = Engine(tiny_models["paths"][0], cfg)
    yield eng
    eng.close()


QUESTIONS = ["12+34=", "7*8=", "99-1="]


@pytest.fixture(scope="session")
def prompts(tiny_models):
    """Token ids of QUESTIONS in the tiny tokenizer's chat template."""
    tok = tiny_models["tokenizer"]
    texts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
             for q in QUESTIONS]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]

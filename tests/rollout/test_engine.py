"""The vLLM CPU engine wrapper on a tiny random Qwen2: sampled log-probs,
score(), live weight loads checked against Hugging Face, in-flight swaps.

All engine tests share one engine (tests/rollout/conftest.py). A test that
loads other weights puts the seed-0 weights back before it returns.
"""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

# float32 on both sides; observed differences are ~1e-6 (kernel order).
SCORE_TOL = 1e-4


def _prompts(tok, questions):
    texts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                     add_generation_prompt=True) for q in questions]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


QUESTIONS = ["12+34=", "7*8=", "(3+4)*2=", "99-1=", "what is 5+5?", "2*3*4=", "10/2=", "1+1="]


@pytest.fixture(scope="module")
def prompts(tiny_models):
    return _prompts(tiny_models["tokenizer"], QUESTIONS)


def _hf_logprobs(model, prompt_ids, completion_ids, temperature=1.0):
    out = []
    with torch.no_grad():
        for p, c in zip(prompt_ids, completion_ids):
            ids = torch.tensor([list(p) + list(c)])
            logits = model(ids).logits[0].float() / temperature
            lp = torch.log_softmax(logits, -1)
            out.append([lp[len(p) + i - 1, t].item() for i, t in enumerate(c)])
    return out


def _max_abs_diff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb, strict=True))


def test_generate_reports_per_token_logprobs_and_stops(engine, tiny_models, prompts):
    eos = tiny_models["tokenizer"].eos_token_id
    done = engine.generate(prompts, temperature=1.0, max_tokens=40, n=2, seed=11)
    assert [c.request_id.rsplit("/", 1)[1] for c in done] == ["0", "1"] * len(prompts)
    assert [c.prompt_ids for c in done] == [p for p in prompts for _ in range(2)]
    reasons = set()
    for c in done:
        assert len(c.token_ids) == len(c.logprobs) == len(c.versions) > 0
        assert all(math.isfinite(x) and x <= 0.0 for x in c.logprobs)
        assert c.versions == [engine.version] * len(c.token_ids)
        reasons.add(c.finish_reason)
        if c.finish_reason == "stop":
            assert c.token_ids[-1] == eos and eos not in c.token_ids[:-1]
        else:
            assert c.finish_reason == "length" and len(c.token_ids) == 40 and eos not in c.token_ids
    # A random 64-token model hits EOS now and then: both endings occur.
    assert reasons == {"stop", "length"}
    # A random model is not peaked: mean log-prob is near -log(64).
    mean = sum(sum(c.logprobs) for c in done) / sum(len(c.logprobs) for c in done)
    assert -5.5 < mean < -3.0
    # The same seeds give the same samples.
    again = engine.generate(prompts[:2], temperature=1.0, max_tokens=40, n=2, seed=11)
    assert [c.token_ids for c in again] == [c.token_ids for c in done[:4]]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_score_of_own_samples_matches_reported_logprobs(engine, prompts, temperature):
    done = engine.generate(prompts, temperature=temperature, max_tokens=30, seed=5)
    scored = engine.score([c.prompt_ids for c in done], [c.token_ids for c in done],
                          temperature=temperature)
    assert _max_abs_diff(scored, [c.logprobs for c in done]) < SCORE_TOL


def test_load_weights_matches_hugging_face(engine, tiny_models, prompts):
    m0, m1 = tiny_models["models"]
    v = engine.version
    before = engine.generate(prompts, temperature=1.0, max_tokens=30, seed=3)
    batch_p = [c.prompt_ids for c in before]
    batch_c = [c.token_ids for c in before]
    assert _max_abs_diff(engine.score(batch_p, batch_c), _hf_logprobs(m0, batch_p, batch_c)) < SCORE_TOL
    try:
        state = m1.state_dict()
        assert "lm_head.weight" in state  # tied, but HF lists it
        engine.load_weights(state, version=v + 1)
        assert engine.version == v + 1
        after = engine.generate(prompts, temperature=1.0, max_tokens=30, seed=3)
        assert [c.token_ids for c in after] != batch_c  # same seeds, new weights
        for temperature in (1.0, 0.7):
            got = engine.score(batch_p, batch_c, temperature=temperature)
            want = _hf_logprobs(m1, batch_p, batch_c, temperature)
            assert _max_abs_diff(got, want) < SCORE_TOL
            assert _max_abs_diff(got, _hf_logprobs(m0, batch_p, batch_c, temperature)) > 0.05
    finally:
        # Back to seed 0, this time without the tied lm_head (the other form).
        state = {k: t for k, t in m0.state_dict().items() if k != "lm_head.weight"}
        engine.load_weights(state, version=v + 2)
    assert _max_abs_diff(engine.score(batch_p, batch_c), _hf_logprobs(m0, batch_p, batch_c)) < SCORE_TOL
    assert [c.token_ids for c in engine.generate(prompts, temperature=1.0, max_tokens=30, seed=3)] == batch_c


def test_weights_swap_between_decode_steps(engine, tiny_models, prompts):
    m0, m1 = tiny_models["models"]
    v = engine.version
    ids = [engine.add(f"swap-{i}", p, temperature=1.0, max_tokens=30, seed=100 + i)[0]
           for i, p in enumerate(prompts)]
    early = []
    steps_before = 5
    for _ in range(steps_before):
        early += engine.step()
    try:
        engine.load_weights(m1.state_dict(), version=v + 1)
        # generate() while the swap requests are in flight: theirs are held back.
        mid = engine.generate(prompts[:1], temperature=1.0, max_tokens=5, seed=1)
        assert mid[0].versions == [v + 1] * len(mid[0].token_ids)
        late = []
        while engine.has_unfinished():
            late += engine.step()
    finally:
        engine.load_weights(m0.state_dict(), version=v + 2)
    done = {c.request_id: c for c in early + late}
    assert sorted(done) == sorted(ids)
    straddled = 0
    for c in done.values():
        # One token per step: the first `steps_before` came from version v.
        k = min(steps_before, len(c.token_ids))
        assert c.versions == [v] * k + [v + 1] * (len(c.token_ids) - k)
        straddled += v in c.versions and v + 1 in c.versions
    assert straddled >= len(prompts) // 2


def test_abort_drops_requests(engine, prompts):
    ids = engine.add("abort-me", prompts[0], temperature=1.0, max_tokens=30, n=3, seed=0)
    assert ids == ["abort-me/0", "abort-me/1", "abort-me/2"]
    engine.step()
    engine.abort(["abort-me"])
    assert not engine.has_unfinished()
    assert engine.step() == []


def test_config_is_light_and_strict():
    code = ("import sys, rollout.config as c; c.EngineConfig(); "
            "bad = [m for m in ('torch', 'vllm', 'ray') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    from pydantic import ValidationError

    from rollout.config import EngineConfig

    EngineConfig(threads_bind="0-1")
    for bad in ({"threads_bind": "cores 0,1"}, {"kv_cache_gib": 0}, {"nope": 1},
                {"device": "tpu"}, {"logprobs_mode": "raw_logits"}):
        with pytest.raises(ValidationError):
            EngineConfig(**bad)


def test_seeded_prompts_longer_than_a_steps_token_budget(engine):
    """More prompt tokens at once than vLLM's CPU step budget (4096): split
    across steps, a seeded request's prefill made vLLM rewind its generator,
    which a CPU generator cannot ('CPU Generator does not use offset'); the
    run with dynamic sampling and partial rollouts died of it. Prefills are
    never split on CPU now."""
    prompts = [[(7 * i + j) % 50 + 10 for j in range(200)] for i in range(32)]  # 6400 prompt tokens
    out = engine.generate(prompts, temperature=1.0, max_tokens=4, seed=123)
    assert len(out) == 32 and all(1 <= len(c.token_ids) <= 4 for c in out)
    again = engine.generate(prompts, temperature=1.0, max_tokens=4, seed=123)
    assert [c.token_ids for c in again] == [c.token_ids for c in out]  # seeded: the same samples

"""Forced interruption and partial rollouts on the real vLLM CPU engine.

A `JobRun` (rollout.jobs) is driven on the shared session engine exactly as
the rollout worker drives it: send the requests it asks for, step, feed it
each completion with the engine's version. A tiny random model rarely emits
EOS, so most samples reach the interruption point or the segment budget.
Every test that loads other weights puts the seed-0 weights back.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rollout.config import InterruptionConfig
from rollout.draft import SEED_STRIDE, Draft
from rollout.jobs import Job, JobRun
from rollout.types import Group
from tests.rollout.conftest import QUESTIONS

SCORE_TOL = 1e-4  # float32 engine vs its own sampled log-probs (test_engine.py)
# ScaleRL's text in lower case: the tiny character tokenizer has no capitals.
TEXT = "okay, time is up. let me stop thinking and formulate a final answer now. </think>"


def _job(prompts, job_id, seed, **kw):
    kw.setdefault("n", 4)
    kw.setdefault("max_tokens", 16)
    return Job(job_id=job_id, step=0, prompts=[{"prompt": q, "answer": "0"} for q in QUESTIONS[:len(prompts)]],
               prompt_ids=[list(p) for p in prompts], temperature=1.0, seed=seed, **kw)


def _drive(engine, job, on_completion=None):
    """Run one job on the engine as rollout.worker does; returns the run and
    the prompt indices in the order they settled. `on_completion(c)` runs
    before each completion is absorbed (e.g. a weight sync)."""
    run = JobRun(job, engine.tokenizer, engine.cfg.max_model_len, engine.version)

    def send(requests):
        for r in requests:
            engine.add(r.request_id, r.prompt_ids, temperature=job.temperature, max_tokens=r.max_tokens, seed=r.seed,
                       stop_token_ids=run.stop_ids)

    send(run.start())
    settled = run.take_settled()
    while not run.done:
        for c in engine.step():
            if on_completion is not None:
                on_completion(c)
            send(run.absorb(c, engine.version))
        settled += run.take_settled()
    return run, settled


def _samples(run, n_prompts):
    return [s for p in range(n_prompts) for s in run.group(p).samples]


def test_interruption_text_inside_window_then_an_answer(engine, prompts):
    window, answer = (4, 12), 8
    cut = InterruptionConfig(text=TEXT, window=window, answer_tokens=answer)
    run, settled = _drive(engine, _job(prompts, "interrupt", seed=21, interruption=cut))
    assert sorted(settled) == [0, 1, 2] and all(run.finished(p) for p in settled)
    text_ids = engine.tokenizer.encode(TEXT, add_special_tokens=False)
    assert engine.tokenizer.unk_token_id not in text_ids and text_ids[-1] == engine.tokenizer.convert_tokens_to_ids("</think>")
    text = engine.tokenizer.decode(text_ids, skip_special_tokens=True)
    samples = _samples(run, len(prompts))
    interrupted = [s for s in samples if s.interrupted]
    assert len(interrupted) >= len(samples) // 2  # a random model seldom stops within 12 tokens
    for s in samples:
        assert len(s.token_ids) == len(s.logprobs) == len(s.versions) == len(s.trainable_mask())
        assert window[0] <= s.interrupt_at <= window[1]
        if not s.interrupted:  # it stopped (EOS) before its point, or had closed its thinking by then
            closed = text_ids[-1] in s.token_ids[:s.interrupt_at]
            assert s.loss_mask is None and (closed or (s.finish_reason == "stop" and len(s.token_ids) <= s.interrupt_at))
            continue
        t, end = s.interrupt_at, s.interrupt_at + len(text_ids)
        assert s.token_ids[t:end] == text_ids and s.logprobs[t:end] == [0.0] * len(text_ids)
        assert s.loss_mask == [True] * t + [False] * len(text_ids) + [True] * (len(s.token_ids) - end)
        assert 1 <= len(s.token_ids) - end <= answer  # the answer follows the text
        assert s.finish_reason == "stop" or len(s.token_ids) - end == answer
        assert text in s.text and s.requests == 2
    assert len({s.interrupt_at for s in samples}) > 1  # drawn per sample
    # The answer was sampled after the text: the engine's log-probs of the
    # answer given prompt + thinking + text are the ones it reported.
    rows = [(p, s) for p in range(len(prompts)) for s in run.group(p).samples if s.interrupted]
    prefix = [list(prompts[p]) + s.token_ids[:s.interrupt_at + len(text_ids)] for p, s in rows]
    tails = [s.token_ids[s.interrupt_at + len(text_ids):] for _, s in rows]
    scored = engine.score(prefix, tails)
    assert max(abs(a - b) for (_, s), got in zip(rows, scored)
               for a, b in zip(got, s.logprobs[s.interrupt_at + len(text_ids):], strict=True)) < SCORE_TOL
    # Deterministic for a fixed seed: points and tokens.
    again, _ = _drive(engine, _job(prompts, "interrupt-again", seed=21, interruption=cut))
    assert [(s.interrupt_at, s.token_ids) for s in _samples(again, len(prompts))] == \
        [(s.interrupt_at, s.token_ids) for s in samples]


def test_partial_rollouts_continue_exactly_under_new_weights(engine, tiny_models, prompts):
    m0, m1 = tiny_models["models"]
    v, budget, n_prompts = engine.version, 6, 2
    job = _job(prompts[:n_prompts], "seg0", seed=5, n=3, max_tokens=20, segment_tokens=budget)
    run, settled = _drive(engine, job)
    first = [run.group(p) for p in range(n_prompts)]
    assert sorted(settled) == [0, 1]
    for p, g in enumerate(first):
        assert run.finished(p) == (not g.unfinished)  # the worker scores only finished groups
        for s in g.samples:
            assert s.versions == [v] * len(s.token_ids) and s.loss_mask is None
            assert s.finish_reason == "partial" and len(s.token_ids) == budget or s.finish_reason == "stop"
    carried = {p: g for p, g in enumerate(first) if g.unfinished}
    assert carried, "a random model stopped every sample within 6 tokens"
    # Carried through a checkpoint: JSON and back.
    saved = {p: Group.from_dict(json.loads(json.dumps(g.to_dict()))) for p, g in carried.items()}
    assert saved == carried
    segments = [first]
    try:
        engine.load_weights(m1.state_dict(), version=v + 1)
        while carried:  # one job per iteration until every group is complete
            job = _job(prompts[:n_prompts], f"seg{len(segments)}", seed=6 + len(segments), n=3, max_tokens=20,
                       segment_tokens=budget, carried=carried)
            run, settled = _drive(engine, job)
            assert sorted(settled) == [0, 1]
            groups = [run.group(p) for p in range(n_prompts)]
            for p, old in carried.items():
                new = groups[p]
                assert run.finished(p) == (not new.unfinished)
                for a, b in zip(old.samples, new.samples, strict=True):
                    k = len(a.token_ids)
                    if a.finished:  # left as it was
                        assert b == a
                        continue
                    assert b.token_ids[:k] == a.token_ids and b.logprobs[:k] == a.logprobs
                    assert b.versions[:k] == a.versions
                    grown = len(b.token_ids) - k
                    assert 1 <= grown <= budget and b.versions[k:] == [v + 1] * grown
                    assert b.loss_mask == [False] * k + [True] * grown  # only the newest segment trains
                    assert b.requests == a.requests + 1 and len(b.token_ids) <= 20
                    assert b.finish_reason in ("stop", "length") or grown == budget
            # the new segments were sampled after the saved tokens, by the new weights
            rows = [(carried[p].prompt_ids, a, b) for p in carried
                    for a, b in zip(carried[p].samples, groups[p].samples) if not a.finished]
            scored = engine.score([list(pi) + a.token_ids for pi, a, _ in rows],
                                  [b.token_ids[len(a.token_ids):] for _, a, b in rows])
            assert max(abs(x - y) for (_, a, b), got in zip(rows, scored)
                       for x, y in zip(got, b.logprobs[len(a.token_ids):], strict=True)) < SCORE_TOL
            segments.append(groups)
            carried = {p: g for p, g in enumerate(groups) if g.unfinished}
            assert len(segments) <= 4  # 20 tokens in segments of 6
    finally:
        engine.load_weights(m0.state_dict(), version=v + 2)
    assert len(segments) >= 3  # 20 tokens need 4 segments when no EOS comes
    final = segments[-1]
    straddled = [s for g in final for s in g.samples if v in s.versions and v + 1 in s.versions]
    assert straddled and all(s.finished for g in final for s in g.samples)


def test_draft_seeds_budget_and_interruption_at_the_budget():
    d = Draft(prompt_ids=[1, 2], seed=100, max_tokens=10, context=40, budget=3, interrupt_at=3,
              text_ids=[9, 9], answer_tokens=2)
    ask = d.next_request()
    assert ask == ([1, 2], 3, 100)
    d.absorb([5, 6, 7], [-1.0] * 3, [0] * 3, "length", version=4)
    # the point and the budget coincide: the text goes in, the answer waits for the next job
    assert d.finish_reason == "partial" and d.token_ids == [5, 6, 7, 9, 9] and d.versions == [0, 0, 0, 4, 4]
    s = d.to_sample("")
    assert s.loss_mask == [True] * 3 + [False] * 2 and s.interrupted and s.requests == 1
    later = Draft.resume(s, [1, 2], version=5, seed=200, max_tokens=10, context=40, budget=3,
                         interrupt_at=8, text_ids=[9, 9], answer_tokens=2)
    assert later.interrupt_at == 3  # the first job's point holds
    assert later.next_request() == ([1, 2, 5, 6, 7, 9, 9], 2, 200 + SEED_STRIDE)  # 3 + 2 + 2 answer - 5
    later.absorb([8], [-1.0], [5], "length", version=5)
    assert later.finish_reason == "length"  # cut short by the engine: the context is full
    tight = Draft(prompt_ids=[1] * 39, seed=None, max_tokens=10, context=40)
    assert tight.next_request() == ([1] * 39, 1, None)


def test_a_response_past_its_thinking_is_not_interrupted():
    # text [7, 9]: 9 closes the thinking (as </think> does)
    d = Draft(prompt_ids=[1], seed=0, max_tokens=10, context=40, interrupt_at=3, text_ids=[7, 9], answer_tokens=2)
    assert d.next_request().max_tokens == 3
    d.absorb([5, 9, 6], [-1.0] * 3, [0] * 3, "length", version=0)
    # it already wrote 9 before its point: it answers on to max_tokens, nothing is appended
    assert not d.interrupted and d.finish_reason is None and d.token_ids == [5, 9, 6]
    assert d.next_request().max_tokens == 7
    d.absorb([4] * 7, [-1.0] * 7, [0] * 7, "length", version=0)
    assert d.finish_reason == "length" and len(d.token_ids) == 10 and all(d.loss_mask)


def test_config_checks_and_stays_light():
    from pydantic import ValidationError

    from rollout.config import SCALERL_INTERRUPTION, RolloutConfig

    cfg = RolloutConfig(max_new_tokens=64, interruption={"window": [16, 48], "answer_tokens": 8},
                        partial_segment_tokens=16)
    assert cfg.interruption.text == SCALERL_INTERRUPTION and cfg.interruption.window == (16, 48)
    for bad, key in [({"interruption": {"window": [16, 64], "answer_tokens": 8}}, "interruption.window"),
                     ({"interruption": {"window": [20, 10], "answer_tokens": 8}}, "interruption.window"),
                     ({"interruption": {"window": [0, 10], "answer_tokens": 8}}, "interruption.window"),
                     ({"interruption": {"window": [4, 10], "answer_tokens": 0}}, "answer_tokens"),
                     ({"partial_segment_tokens": 64}, "partial_segment_tokens"),
                     ({"partial_segment_tokens": 0}, "partial_segment_tokens")]:
        with pytest.raises(ValidationError, match=key.replace(".", r"\.").replace("[", r"\[")):
            RolloutConfig(max_new_tokens=64, **bad)
    code = ("import sys, rollout.config as c; c.RolloutConfig(interruption={'window': [1, 2], 'answer_tokens': 1}); "
            "bad = [m for m in ('torch', 'vllm', 'ray') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_worker_carries_partial_groups_and_scores_each_group_once(ray_local, tiny_models, prompts):
    """Both controls at once, through the Ray rollout worker and the reward
    hub: unfinished groups come back unscored, continue under version 1 after
    a weight push, and every group reaches the hub exactly once, complete."""
    import ray

    from rewards.config import RewardsConfig
    from rewards.hub import start_hub
    from rl.fleet import ENGINE_ENV
    from rollout.config import EngineConfig
    from rollout.weights import pack
    from rollout.worker import RolloutWorker

    hub = start_hub(RewardsConfig(terms={"math": 1.0}, replica_cpus=0.25))
    worker = ray.remote(max_concurrency=4)(RolloutWorker).options(
        num_cpus=1, runtime_env={"env_vars": dict(ENGINE_ENV)}).remote(
        tiny_models["paths"][0], EngineConfig(max_model_len=256, threads_bind="nobind"), hub, 0)
    cut = InterruptionConfig(text=TEXT, window=(3, 8), answer_tokens=4)
    n, scored_groups, carried, rounds = 2, 0, {}, []
    try:
        for r in range(5):  # 8 thinking + text + 4 answer tokens in segments of 5: at most 4 rounds
            if r == 1:
                state = {k: t for k, t in tiny_models["models"][1].state_dict().items() if k != "lm_head.weight"}
                ray.get(worker.connect_weights.remote("safetensors", None, 0))
                ray.get(worker.receive_weights.remote(1, pack(state)))  # tied head
            job = _job(prompts, f"w{r}", seed=30 + r, n=n, max_tokens=12, segment_tokens=5,
                       interruption=cut, carried=carried)
            groups = ray.get(worker.generate.remote(job)).groups
            for p, g in enumerate(groups):
                if p in carried or r == 0:
                    scored = all("correct" in s.reward_details for s in g.samples)
                    assert scored == (not g.unfinished)  # scored only when complete
                    scored_groups += scored
                if p in carried:
                    for a, b in zip(carried[p].samples, g.samples):
                        assert b.token_ids[:len(a.token_ids)] == a.token_ids and b.versions[:len(a.versions)] == a.versions
                        assert a.finished or set(b.versions[len(a.versions):]) == {1}
            rounds.append(groups)
            carried = {p: g for p, g in enumerate(groups) if g.unfinished and (p in carried or r == 0)}
            if not carried:
                break
        assert not carried and len(rounds) >= 2
        assert hub.metrics()["items"] == n * len(prompts) == n * scored_groups  # each group scored once
        samples = [s for groups in rounds for p, g in enumerate(groups) if not g.unfinished for s in g.samples]
        assert any(s.interrupted for s in samples)
        assert any(0 in s.versions and 1 in s.versions for s in samples)
    finally:
        ray.get(worker.stop.remote())
        ray.kill(worker)
        hub.shutdown()

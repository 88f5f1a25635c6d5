"""Multi-turn episodes on the real vLLM CPU engine (rollout/env.py): which
tokens train, which version stamps them, and an episode carried across jobs.

The engine serves a tiny random model with the character tokenizer, so the
test environment ends a model turn at any digit (a random model samples one
within a few tokens) and answers the first `replies` turns with a fixed
observation.
"""
from __future__ import annotations

import json

import pytest

from rollout import env as env_mod
from rollout.config import EnvConfig
from rollout.draft import Draft
from rollout.env import Calculator, Reply, calculate
from core.errors import UserError
from rollout.jobs import Job, check_env, stop_token_ids
from rollout.python_tool import PythonTool
from rollout.types import Group

from tests.rollout.test_continuation import SCORE_TOL, _drive, _job

OBS = "=ok;"
DIGITS = tuple("0123456789")


class Replier:
    """Ends a turn at a digit; the first `replies` turns get OBS, the next ends the episode."""

    def __init__(self, replies: int = 1, fail: bool = False):
        self.replies, self.fail, self.stop = replies, fail, DIGITS

    def start(self, row):
        return {"answered": 0, "turns": []}

    def step(self, state, turn):
        if self.fail:
            raise RuntimeError("the environment broke")
        turns = state["turns"] + [turn]
        if state["answered"] >= self.replies:
            return Reply({"answered": state["answered"], "turns": turns})
        return Reply({"answered": state["answered"] + 1, "turns": turns}, OBS, tool_call=True)


class Coder:
    """Ends a turn at a digit; the Python tool runs code that hangs for the first
    turn and code that raises for the second (the character tokenizer has no
    '<', so the observation is the tool's output without tags); the third turn
    ends the episode."""

    CODE = ("while True: pass", "raise ValueError('bad input')")

    def __init__(self):
        self.tool, self.stop = PythonTool(limits={"wall_s": 0.5}), DIGITS

    def start(self, row):
        return {"cells": [], "calls": 0}

    def step(self, state, turn):
        if state["calls"] == len(self.CODE):
            return Reply(state)
        out, error = self.tool.run(state["cells"], self.CODE[state["calls"]])
        return Reply({**state, "calls": state["calls"] + 1}, out, tool_call=True, error=error)


@pytest.fixture(autouse=True)
def replier(monkeypatch):
    monkeypatch.setitem(env_mod.ENVIRONMENTS, "replier", Replier)
    monkeypatch.setitem(env_mod.ENVIRONMENTS, "coder", Coder)


def _env(**options):
    max_turns = options.pop("max_turns", 4)
    return EnvConfig(name="replier", max_turns=max_turns, options=options)


def _spans(sample, obs_ids):
    """Start positions of the observation in the response."""
    ids, n = sample.token_ids, len(obs_ids)
    return [i for i in range(len(ids) - n + 1) if ids[i:i + n] == obs_ids]


def test_a_two_turn_episode_trains_exactly_the_model_tokens(engine, prompts):
    job = _job(prompts, "two-turn", seed=3, n=4, max_tokens=40, env=_env(replies=1))
    run, settled = _drive(engine, job)
    assert sorted(settled) == [0, 1, 2]
    obs_ids = engine.tokenizer.encode(OBS, add_special_tokens=False)
    two = []
    for p in range(len(prompts)):
        for s in run.group(p).samples:
            ep = s.episode
            assert len(s.token_ids) == len(s.logprobs) == len(s.versions) == len(s.trainable_mask())
            if ep.turns == 1:  # the first turn hit max_tokens or EOS before a digit
                assert ep.observation_tokens == 0 and s.loss_mask is None
                continue
            two.append((p, s))
            (t,) = _spans(s, obs_ids)  # once, right after the first turn's digit
            assert s.token_ids[t - 1] in stop_token_ids(engine.tokenizer, DIGITS)
            mask = [True] * t + [False] * len(obs_ids) + [True] * (len(s.token_ids) - t - len(obs_ids))
            assert s.loss_mask == mask and s.logprobs[t:t + len(obs_ids)] == [0.0] * len(obs_ids)
            assert ep.turns == 2 and ep.observation_tokens == len(obs_ids) and ep.tool_calls == 1
            assert s.model_tokens == len(s.token_ids) - len(obs_ids)
            assert ep.state["answered"] == 1
            # the environment saw each turn's text; the second turn ended the episode
            assert len(ep.state["turns"]) == (2 if s.finish_reason == "stop" else 1)
    assert len(two) >= 6, f"only {len(two)} of 12 samples reached a second turn"
    # the second turn was sampled after the observation: the engine's log-probs
    # of it given prompt + turn 1 + observation are the ones it reported
    ends = [_spans(s, obs_ids)[0] + len(obs_ids) for _, s in two]
    scored = engine.score([list(prompts[p]) + s.token_ids[:e] for (p, s), e in zip(two, ends)],
                          [s.token_ids[e:] for (_, s), e in zip(two, ends)])
    assert max(abs(a - b) for (_, s), e, got in zip(two, ends, scored)
               for a, b in zip(got, s.logprobs[e:], strict=True)) < SCORE_TOL
    # length rewards read the model's tokens only
    items = run.reward_items(two[0][0])
    assert [i["length"] for i in items] == [s.model_tokens for s in run.group(two[0][0]).samples]
    # what a training step logs about these episodes
    from rl.step_metrics import rollout_metrics
    from rollout.types import RolloutBatch
    m = rollout_metrics(RolloutBatch(step=1, groups=[run.group(p) for p in range(len(prompts))]), step=1, k=0)
    assert m["env/turns_mean"] == pytest.approx((12 + len(two)) / 12)
    assert m["env/tool_call_rate"] == pytest.approx(len(two) / 12) and m["env/failed"] == 0
    assert m["env/observation_tokens_mean"] == pytest.approx(len(two) * len(obs_ids) / 12)


def test_a_sync_between_turns_gives_the_next_turn_the_new_weights(engine, tiny_models, prompts):
    m0, m1 = tiny_models["models"]
    v = engine.version
    job = _job(prompts[:1], "sync", seed=4, n=4, max_tokens=40, env=_env(replies=1))

    def sync_once(completion):  # the first turn to end: new weights before its next turn is sent
        if engine.version == v:
            engine.load_weights(m1.state_dict(), version=v + 1)

    try:
        run, _ = _drive(engine, job, on_completion=sync_once)
        obs_ids = engine.tokenizer.encode(OBS, add_special_tokens=False)
        checked = 0
        for s in run.group(0).samples:
            if s.episode.turns < 2:
                continue
            t = _spans(s, obs_ids)[0]
            e = t + len(obs_ids)
            assert set(s.versions[e:]) == {v + 1}  # every token of the second turn: the new weights
            assert s.versions[t:e] == [v + 1] * len(obs_ids)  # appended after the sync
            assert s.trainable_min_version == min(s.versions[:t])  # the oldest trained token is turn 1's
            checked += 1
        assert checked, "no sample reached a second turn"
        first = [s for s in run.group(0).samples if s.episode.turns >= 2][0]
        t = _spans(first, obs_ids)[0]
        assert set(first.versions[:t]) <= {v, v + 1} and v in first.versions[:t]
    finally:
        engine.load_weights(m0.state_dict(), version=v + 2)


def test_an_episode_cut_by_the_segment_budget_continues_once(engine, prompts):
    budget = 3
    job = _job(prompts[:2], "ep-seg0", seed=8, n=3, max_tokens=30, segment_tokens=budget,
               env=_env(replies=2, max_turns=3))
    run, _ = _drive(engine, job)
    carried = {p: run.group(p) for p in range(2) if run.group(p).unfinished}
    assert carried
    rounds = 1
    while carried:  # through JSON, as a checkpoint carries it
        carried = {p: Group.from_dict(json.loads(json.dumps(g.to_dict()))) for p, g in carried.items()}
        job = _job(prompts[:2], f"ep-seg{rounds}", seed=8 + rounds, n=3, max_tokens=30, segment_tokens=budget,
                   env=_env(replies=2, max_turns=3), carried=carried)
        run, _ = _drive(engine, job)
        done = {p: run.group(p) for p in carried}
        carried = {p: g for p, g in done.items() if g.unfinished}
        rounds += 1
        assert rounds <= 12
    obs_ids = engine.tokenizer.encode(OBS, add_special_tokens=False)
    finals = [s for g in done.values() for s in g.samples]
    multi = [s for s in finals if s.episode.turns > 1]
    assert multi, "no carried episode reached a second turn"
    for s in finals:
        ep = s.episode
        # each observation once, one per answered turn; each turn's text seen once
        assert len(_spans(s, obs_ids)) == ep.turns - 1
        # the environment answered once more when its last observation did not fit (truncated)
        assert ep.state["answered"] == ep.tool_calls == ep.turns - 1 + (ep.state["answered"] == ep.turns)
        assert ep.state["answered"] == ep.turns - 1 or s.finish_reason == "length"
        assert len(ep.state["turns"]) in (ep.turns - 1, ep.turns)
        assert ep.observation_tokens == len(obs_ids) * (ep.turns - 1)


def test_turn_limit_and_a_failing_environment(engine, prompts):
    # max_turns 1: a turn the environment would answer ends the episode as 'length'
    run, _ = _drive(engine, _job(prompts[:1], "limit", seed=9, n=4, max_tokens=40, env=_env(max_turns=1)))
    samples = run.group(0).samples
    assert all(s.episode.turns == 1 and s.episode.observation_tokens == 0 for s in samples)
    assert all(s.finish_reason == "length" for s in samples)
    # an environment that raises masks its samples (a failure, not a verdict)
    run, _ = _drive(engine, _job(prompts[:1], "broken", seed=9, n=4, max_tokens=40, env=_env(fail=True)))
    broke = [s for s in run.group(0, [_Result()] * 4).samples if s.episode.failed]
    assert broke and all(s.reward is None and s.reward_masked == "env_error" for s in broke)
    assert "the environment broke" in broke[0].episode.failed


class _Result:
    masked, mask_reason, score, details = False, None, 1.0, {}


def test_a_tool_that_hangs_or_raises_is_an_observation_and_a_counted_error(engine, prompts):
    job = _job(prompts[:1], "tool", seed=5, n=4, max_tokens=80, env=EnvConfig(name="coder", max_turns=3))
    run, _ = _drive(engine, job)
    samples = run.group(0, [_Result()] * 4).samples
    called = [s for s in samples if s.episode.tool_calls]
    assert called, "no turn ended at a digit"
    for s in called:
        ep, text = s.episode, engine.tokenizer.decode(s.token_ids)
        assert ep.failed is None and s.reward == 1.0 and s.reward_masked is None  # the rollout went on
        assert ep.tool_errors == ep.tool_calls >= ep.turns - 1
        if ep.turns >= 2:
            assert "error: timed out after 0.5 s" in text
        if ep.turns >= 3:  # 'ValueError' loses its capitals in the character tokenizer
            assert "error: " in text.split("0.5 s", 1)[1] and "bad input" in text
    assert any(s.episode.turns >= 2 for s in called)


def test_the_python_tool_keeps_a_session_per_episode():
    tool = make_python()
    state = tool.start({})
    r = tool.step(state, "first <python>import math\nx = math.factorial(5)\nprint('ok')</python>")
    assert (r.observation, r.tool_call, r.error) == ("<output>ok\n</output>", True, False)
    r = tool.step(r.state, "<python>print(x + 1)</python>")  # the name defined by the last call
    assert r.observation == "<output>121\n</output>" and not r.error
    r = tool.step(r.state, "<python>print(1)\ny = 1 / 0</python>")  # a failed cell is not kept
    assert r.observation == "<output>1\nerror: ZeroDivisionError: division by zero</output>" and r.error
    r = tool.step(r.state, "<python>print(y)</python>")
    assert r.error and "NameError: name 'y' is not defined" in r.observation
    r = tool.step(r.state, "<python>print(open('/etc/hostname').read())</python>")  # the host is not there
    assert r.error and "FileNotFoundError" in r.observation
    r = tool.step(r.state, "<python>print('z' * 80)</python>")
    assert r.observation == "<output>" + "z" * 60 + "... [21 more characters]</output>"
    assert len(r.state["cells"]) == 3 and tool.step(r.state, "the answer is 121").observation is None
    # a new episode starts with nothing defined
    r = tool.step(tool.start({}), "<python>print(x)</python>")
    assert r.error and "NameError" in r.observation
    with pytest.raises(ValueError, match="^python tool limits: wall_s: Input should be greater than 0$"):
        env_mod.make_env("python", {"limits": {"wall_s": 0}})


def make_python():
    return env_mod.make_env("python", {"limits": {"wall_s": 5.0}, "max_output_chars": 60})


def test_calculator_answers_calls_and_reports_errors():
    calc = Calculator()
    state = calc.start({})
    r = calc.step(state, "let me add <calc>123456789+987654321</calc>")
    assert (r.observation, r.tool_call, r.error) == ("<result>1111111110</result>", True, False)
    r = calc.step(r.state, "<calc>(2+3)*-4 // 3</calc>")
    assert (r.observation, r.tool_call, r.error) == ("<result>-7</result>", True, False) and r.state == {}
    for bad, says in [("__import__('os')", "not allowed: Call"), ("1/0", "not allowed: Div"),
                      ("7//0", "division by zero"), ("9" * 70, "longer than 64"), ("2+", "cannot parse")]:
        r = calc.step(r.state, f"<calc>{bad}</calc>")
        assert r.tool_call and r.error and says in r.observation, (bad, r.observation)
    done = calc.step(r.state, "so the answer is \\boxed{5}")
    assert done.observation is None and not done.tool_call and done.state == r.state
    assert calculate(" 10 % 4 + 1 ") == 3


def test_the_tool_use_corpus_is_what_the_calculator_answers(engine):
    """tiny-calc's SFT traces (rl.data.arith.tool_response) split at the
    turn's stop token into a turn and the calculator's reply, token for
    token: the base learns exactly the episodes the engine will run."""
    from rl.data.arith import CALC_TAGS, make_sft_examples

    calc, tok = Calculator(**CALC_TAGS), engine.tokenizer
    (stop,) = stop_token_ids(tok, calc.stop)
    tool = [r for r in make_sft_examples(200, 5, 4, 7, tool_rate=0.25) if "calc[" in r["response"]]
    assert 30 <= len(tool) <= 70  # a quarter of 200, drawn
    for row in tool:
        ids = tok.encode(row["response"], add_special_tokens=False)
        assert tok.decode(ids) == row["response"]  # every character is in the vocabulary
        cut = ids.index(stop) + 1
        reply = calc.step({}, tok.decode(ids[:cut]))
        obs = tok.encode(reply.observation, add_special_tokens=False)
        assert ids[cut:cut + len(obs)] == obs and reply.observation == f"={row['answer']};"
        assert row["response"].endswith(f"\\boxed{{{row['answer']}}}")


def test_a_stop_string_must_be_one_token_and_an_observation_must_fit(engine):
    with pytest.raises(ValueError, match="'ab' is 2 tokens"):
        stop_token_ids(engine.tokenizer, ("ab",))
    d = Draft(prompt_ids=[1, 2], seed=None, max_tokens=10, context=40)
    d.absorb([5, 6, 7], [-1.0] * 3, [0] * 3, "stop", 0)
    from rollout.types import Episode
    d.episode = Episode(state={})
    d.observe([8] * 7, version=0)  # 3 + 7 reaches max_tokens: no room for another turn
    assert d.finish_reason == "length" and d.token_ids == [5, 6, 7] and d.episode.turns == 1
    with pytest.raises(ValueError, match="unknown environment 'nope'"):
        env_mod.make_env("nope")
    assert isinstance(env_mod.make_env("tests.rollout.test_env:Replier", {"replies": 2}), Replier)
    with pytest.raises(ValueError, match="'tests.rollout.test_env:Nope' cannot be imported"):
        env_mod.make_env("tests.rollout.test_env:Nope")
    # a recipe's environment is checked against the model's tokenizer before anything starts
    with pytest.raises(UserError, match=r"^rollout.env: the environment's stop string '</calc>' is \d+ tokens"):
        check_env(engine.tokenizer, EnvConfig(name="calculator"))
    check_env(engine.tokenizer, EnvConfig(name="calculator", options={"close_tag": "</think>"}))
    with pytest.raises(UserError, match="rollout.env: .*unexpected keyword argument 'nope'"):
        check_env(engine.tokenizer, EnvConfig(name="calculator", options={"nope": 1}))
    assert Job(job_id="j", step=0, prompts=[], prompt_ids=[], n=2, temperature=1.0, max_tokens=4).env is None

"""The field's environments on this project's engine and hub: an OpenEnv
environment defined here, with its rubric, run by the real vLLM CPU engine
(rollout/openenv_env.py) and scored by the reward hub; the restart of an
episode whose state is not JSON; an environment that cannot start; and a
reasoning-gym task as a single-turn environment.

The engine serves a tiny random model with the character tokenizer, so a
model turn ends at any digit (rollout/test_env.py)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("openenv.core")

from openenv.core.env_server.interfaces import Environment  # noqa: E402
from openenv.core.env_server.types import Action, Observation, State  # noqa: E402
from openenv.core.rubrics import Rubric  # noqa: E402

from rewards.config import RewardsConfig  # noqa: E402
from rewards.scorer import Scorer  # noqa: E402
from rollout.config import EnvConfig  # noqa: E402
from rollout.env import ReasoningGym, make_env  # noqa: E402
from rollout.types import Group  # noqa: E402

from tests.rollout.test_continuation import _drive, _job  # noqa: E402
from tests.rollout.test_env import _Result  # noqa: E402  (a scored hub result)

DIGITS = list("0123456789")


class Say(Action):
    text: str


class Heard(Observation):
    text: str


class EndsEven(Rubric):
    """1 for a turn that ends at an even digit."""

    def forward(self, action, observation) -> float:
        return 1.0 if action.text[-1:] in "02468" and action.text[-1:] != "" else 0.0


class DigitGame(Environment[Say, Heard, State]):
    """OpenEnv's API as its users write it: `rounds` steps, each answered
    with '=N;', the reward set by the environment's rubric."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, rounds: int = 2, broken: bool = False):
        super().__init__(rubric=EndsEven())
        self.rounds, self.broken, self._state = rounds, broken, State()

    def reset(self, seed=None, episode_id=None, **kwargs) -> Heard:
        if self.broken:
            raise ConnectionError("the game server is down")
        self._reset_rubric()
        self._state = State(episode_id=episode_id)
        return Heard(text="")

    def step(self, action: Say, timeout_s=None, **kwargs) -> Heard:
        self._state.step_count += 1
        obs = Heard(text=f"={self._state.step_count};", done=self._state.step_count >= self.rounds)
        obs.reward = self._apply_rubric(action, obs)
        return obs

    @property
    def state(self) -> State:
        return self._state


def _game(**env_options) -> EnvConfig:
    return EnvConfig(name="openenv", max_turns=4, options={
        "env": "tests.rollout.test_openenv:DigitGame", "env_options": env_options, "stop": DIGITS})


def test_an_openenv_environment_runs_on_the_engine_and_its_rubric_is_the_reward(engine, prompts):
    run, _ = _drive(engine, _job(prompts, "openenv", seed=11, n=4, max_tokens=40, env=_game(rounds=2)))
    scorer = Scorer(RewardsConfig(terms={"math": 0.0}, env_terms={"openenv": 1.0}))
    try:
        groups = [run.group(p, scorer.score_items(run.reward_items(p))) for p in range(len(prompts))]
    finally:
        scorer.close()
    samples = [s for g in groups for s in g.samples]
    rewards = []
    for s in samples:
        ep = s.episode
        text = engine.tokenizer.decode(s.token_ids, skip_special_tokens=True)
        # each step the game answered is one '=N;' in the response, except the last, which ended it
        assert text.count("=1;") == (ep.state["steps"] >= 2 or ep.turns == 2)
        turns = [t for t in text.replace("=1;", "|").split("|")][:ep.state["steps"]]
        expected = sum(1.0 for t in turns if t[-1:] in "02468" and t[-1:] != "")
        assert s.reward_masked is None and s.reward == pytest.approx(expected)
        assert s.reward_details["terms"]["env.openenv"] == pytest.approx(expected)
        rewards.append(s.reward)
    assert len(set(rewards)) >= 2, f"every episode earned {rewards[0]}: the rubric told nothing apart"
    assert any(s.episode.state["steps"] == 2 for s in samples), "no episode reached the game's end"


@pytest.fixture(scope="module")
def game_server():
    """DigitGame served by OpenEnv's own server (HTTP + WebSocket sessions), as
    OpenEnv environments are deployed; its URL."""
    import threading
    import time

    import uvicorn
    from openenv.core.env_server.http_server import create_fastapi_app

    app = create_fastapi_app(lambda: DigitGame(rounds=2), Say, Heard, max_concurrent_envs=64)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_served_openenv_environment_gives_the_same_episodes(engine, prompts, game_server):
    """The same game over OpenEnv's server and client: the same job (same
    seeds) samples the same tokens and earns the same rewards as in-process."""
    url_env = EnvConfig(name="openenv", max_turns=4, options={"url": game_server, "action_field": "text",
                                                                "stop": DIGITS})
    local, _ = _drive(engine, _job(prompts[:2], "oe-local", seed=15, n=4, max_tokens=40, env=_game(rounds=2)))
    served, _ = _drive(engine, _job(prompts[:2], "oe-served", seed=15, n=4, max_tokens=40, env=url_env))
    served.close_env()
    assert served.env._live == {}  # every session closed, those a limit stopped too
    a = [s for p in range(2) for s in local.group(p).samples]
    b = [s for p in range(2) for s in served.group(p).samples]
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert [s.episode.reward for s in a] == [s.episode.reward for s in b]
    assert any(s.episode.state["steps"] == 2 for s in b), "no episode reached the game's end on the server"
    with pytest.raises(ValueError, match="action_field"):
        make_env("openenv", {"url": game_server})


def test_an_episode_whose_state_is_not_json_starts_again_when_carried(engine, prompts):
    job = _job(prompts[:2], "oe-seg0", seed=12, n=3, max_tokens=30, segment_tokens=3, env=_game(rounds=3))
    run, _ = _drive(engine, job)
    carried = {p: Group.from_dict(json.loads(json.dumps(run.group(p).to_dict())))
               for p in range(2) if run.group(p).unfinished}
    assert carried, "no episode was cut at the segment budget"
    before = {(p, i): s for p, g in carried.items() for i, s in enumerate(g.samples)}
    job = _job(prompts[:2], "oe-seg1", seed=13, n=3, max_tokens=30, env=_game(rounds=3), carried=carried)
    run, _ = _drive(engine, job)
    restarted = 0
    for (p, i), old in before.items():
        new = run.group(p).samples[i]
        if old.finished:
            assert new.episode.restarts == 0 and new.token_ids == old.token_ids
            continue
        restarted += 1
        assert new.episode.restarts == 1 and new.finished and new.episode.failed is None
        assert new.requests > old.requests  # a fresh draw from the prompt, not the first one again
        assert sum(new.trainable_mask()) == new.model_tokens  # every model token of the new start trains
    assert restarted


def test_an_environment_that_cannot_start_masks_its_samples(engine, prompts):
    run, _ = _drive(engine, _job(prompts[:1], "oe-broken", seed=14, n=2, max_tokens=20, env=_game(broken=True)))
    samples = run.group(0, [_Result()] * 2).samples
    assert all(s.token_ids == [] and s.reward is None and s.reward_masked == "env_error" for s in samples)
    assert "ConnectionError: the game server is down" in samples[0].episode.failed


def test_adapter_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="cannot be imported"):
        make_env("openenv", {"env": "tests.rollout.test_openenv:NoSuchGame"})
    with pytest.raises(ValueError, match="has no field 'words'"):
        make_env("openenv", {"env": "tests.rollout.test_openenv:DigitGame", "action_field": "words"})


def test_a_reasoning_gym_task_as_a_single_turn_environment():
    import reasoning_gym

    from rl.data.reasoning_gym_task import to_row

    entry = reasoning_gym.create_dataset("basic_arithmetic", size=1, seed=3)[0]
    row = json.loads(json.dumps(to_row(entry), default=str))
    env = ReasoningGym()
    state = env.start(row)
    right = env.step(state, f"so <answer>{entry['answer']}</answer>")
    wrong = env.step(state, "<answer>no idea</answer>")
    assert (right.observation, right.reward) == (None, {"reasoning_gym": 1.0})
    assert wrong.observation is None and wrong.reward["reasoning_gym"] < 0.1
    with pytest.raises(ValueError, match="no reasoning-gym entry"):
        env.start({"prompt": "1+1", "answer": "2"})

"""OpenEnv environments on this project's engine (the `openenv` extra:
openenv-core). An OpenEnv environment is a gym-style object: `reset()` gives
an observation, `step(action)` the next one, each with `done` and a
`reward` (which its rubric, if it has one, usually sets). The adapter makes
one instance per episode and maps our turns onto it:

- a model turn's text is the action: the Action class's one text field
  (`action_field` names it when there are several);
- the observation's text is what the model reads next (`observation_field`,
  or the observation's one field besides done/reward/metadata), formatted
  with `template`; `done` ends the episode;
- each observation's `reward` is added to the episode's reward term
  `term` (None counts as no reward); the hub adds the sum to the row's own
  reward with weight `rewards.env_terms[term]`;
- the prompt is the row's (the task's), and `reset()` gets the row's
  `meta.reset` keyword arguments, if any; reset's own observation is not
  shown to the model.

The instance lives in this object, not in the episode's JSON state
(`json_state` False): an episode carried into another job (a partial
rollout, a resume) starts again from `reset()`, counted in
`Episode.restarts`.
"""
from __future__ import annotations

import importlib.util
import json
import typing
import uuid
from typing import Any, Optional

from rollout.env import Reply, import_target

_BASE_FIELDS = ("done", "reward", "metadata")


def _action_class(env_cls: type):
    """The Action class an Environment subclass declares (Environment[Act, Obs, State])."""
    from openenv.core.env_server.types import Action

    for klass in env_cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            for arg in typing.get_args(base):
                if isinstance(arg, type) and issubclass(arg, Action):
                    return arg
    raise ValueError(f"{env_cls.__name__} does not declare its Action class; set options.action")


def _pick_field(names, given: Optional[str], owner: str, what: str) -> str:
    """The field of `owner` (an Action class's or an observation's field
    `names`) that carries text: `given` when it is one of them, else the one
    field besides done/reward/metadata; ValueError naming the option to set."""
    fields = [f for f in names if f not in _BASE_FIELDS]
    if given is not None:
        if given not in names:
            raise ValueError(f"{owner} has no field {given!r} (fields: {', '.join(fields)})")
        return given
    if len(fields) != 1:
        raise ValueError(f"{owner} has {len(fields)} fields ({', '.join(fields)}); "
                         f"name the {what} one in options.{what}_field")
    return fields[0]


class _Local:
    """One episode on an instance of the Environment class, in this process."""

    def __init__(self, env_cls: type, options: dict[str, Any], action_cls: type):
        self.env, self.action_cls = env_cls(**options), action_cls

    def reset(self, **kwargs: Any) -> None:
        self.env.reset(**kwargs)

    def step(self, action: dict[str, Any]) -> tuple[dict[str, Any], Optional[float], bool]:
        obs = self.env.step(self.action_cls(**action))
        return obs.model_dump(), obs.reward, obs.done

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if callable(close):
            close()


class _Served:
    """One episode on an OpenEnv server (its own WebSocket session)."""

    def __init__(self, url: str):
        from openenv.core.generic_client import GenericEnvClient

        self.client = GenericEnvClient(base_url=url).sync()
        self.client.connect()

    def reset(self, **kwargs: Any) -> None:
        self.client.reset(**kwargs)

    def step(self, action: dict[str, Any]) -> tuple[dict[str, Any], Optional[float], bool]:
        result = self.client.step(action)
        return dict(result.observation or {}), result.reward, bool(result.done)

    def close(self) -> None:
        self.client.close()


class OpenEnvAdapter:
    """An OpenEnv environment as an environment of this project's engine
    (rollout/env.py): an `Environment` class ('package.module:Class', run
    in the rollout worker) or a running OpenEnv server (`url`)."""

    json_state = False

    def __init__(self, env: Optional[str] = None, url: Optional[str] = None,
                 env_options: Optional[dict[str, Any]] = None, action: Optional[str] = None,
                 action_field: Optional[str] = None, observation_field: Optional[str] = None,
                 template: str = "{}", term: str = "openenv", stop: tuple[str, ...] = ()):
        if importlib.util.find_spec("openenv") is None:
            raise ValueError("the openenv environment needs openenv-core: pip install -e '.[openenv]'")
        if (env is None) == (url is None):
            raise ValueError("name either options.env (an Environment class) or options.url (a server)")
        if env is not None:
            env_cls = import_target(env, "OpenEnv environment")
            action_cls = import_target(action, "OpenEnv action") if action else _action_class(env_cls)
            self.action_field = _pick_field(action_cls.model_fields, action_field, action_cls.__name__, "action")
            self._open = lambda: _Local(env_cls, dict(env_options or {}), action_cls)
        else:
            if action_field is None:
                raise ValueError("options.action_field: name the Action's text field (a server's Action "
                                 "class is not known here)")
            self.action_field, self._open = action_field, lambda: _Served(url)
        self.observation_field, self.template, self.term = observation_field, template, term
        self.stop = tuple(stop)
        self._live: dict[str, Any] = {}  # episode id -> the session playing it

    def start(self, row: dict[str, Any]) -> dict[str, Any]:
        meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
        session, episode_id = self._open(), uuid.uuid4().hex
        try:
            session.reset(episode_id=episode_id, **dict(meta.get("reset") or {}))
        except Exception:
            session.close()
            raise
        self._live[episode_id] = session
        return {"episode_id": episode_id, "steps": 0}

    def step(self, state: dict[str, Any], turn: str) -> Reply:
        session = self._live.get(state["episode_id"])
        if session is None:
            raise RuntimeError("the episode's OpenEnv session is gone (it belongs to another job)")
        obs, value, done = session.step({self.action_field: turn})
        state = {**state, "steps": state["steps"] + 1}
        reward = {self.term: 0.0 if value is None else float(value)}
        if done:
            self._live.pop(state["episode_id"]).close()
            return Reply(state, reward=reward)
        text = obs[_pick_field(obs, self.observation_field, "the observation", "observation")]
        return Reply(state, self.template.format(text if isinstance(text, str) else json.dumps(text, default=str)),
                     reward=reward)

    def close(self) -> None:
        """End every episode still open (one stopped by a limit before `done`)."""
        while self._live:
            self._live.popitem()[1].close()

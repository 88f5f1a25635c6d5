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

import importlib
import importlib.util
import json
import typing
import uuid
from typing import Any, Optional

from rollout.env import Reply

_BASE_FIELDS = ("done", "reward", "metadata")


def _import(target: str):
    module, _, attr = target.rpartition(":")
    if not module:
        raise ValueError(f"{target!r} is not 'package.module:Name'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{target!r} cannot be imported ({type(err).__name__}: {err})") from None


def _action_class(env_cls: type):
    """The Action class an Environment subclass declares (Environment[Act, Obs, State])."""
    from openenv.core.env_server.types import Action

    for klass in env_cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            for arg in typing.get_args(base):
                if isinstance(arg, type) and issubclass(arg, Action):
                    return arg
    raise ValueError(f"{env_cls.__name__} does not declare its Action class; set options.action")


def _one_field(model_cls: type, given: Optional[str], what: str) -> str:
    fields = [f for f in model_cls.model_fields if f not in _BASE_FIELDS]
    if given is not None:
        if given not in model_cls.model_fields:
            raise ValueError(f"{model_cls.__name__} has no field {given!r} (fields: {', '.join(fields)})")
        return given
    if len(fields) != 1:
        raise ValueError(f"{model_cls.__name__} has {len(fields)} fields ({', '.join(fields)}); "
                         f"name the {what} one in options.{what}_field")
    return fields[0]


class OpenEnvAdapter:
    """An OpenEnv `Environment` class ('package.module:Class') as an
    environment of this project's engine (rollout/env.py)."""

    json_state = False

    def __init__(self, env: str, env_options: Optional[dict[str, Any]] = None, action: Optional[str] = None,
                 action_field: Optional[str] = None, observation_field: Optional[str] = None,
                 template: str = "{}", term: str = "openenv", stop: tuple[str, ...] = ()):
        if importlib.util.find_spec("openenv") is None:
            raise ValueError("the openenv environment needs openenv-core: pip install -e '.[openenv]'")
        self.env_cls = _import(env)
        self.env_options = dict(env_options or {})
        self.action_cls = _import(action) if action else _action_class(self.env_cls)
        self.action_field = _one_field(self.action_cls, action_field, "action")
        self.observation_field, self.template, self.term = observation_field, template, term
        self.stop = tuple(stop)
        self._live: dict[str, Any] = {}  # episode id -> the environment instance playing it

    def start(self, row: dict[str, Any]) -> dict[str, Any]:
        meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
        instance = self.env_cls(**self.env_options)
        episode_id = uuid.uuid4().hex
        instance.reset(episode_id=episode_id, **dict(meta.get("reset") or {}))
        self._live[episode_id] = instance
        return {"episode_id": episode_id, "steps": 0}

    def step(self, state: dict[str, Any], turn: str) -> Reply:
        instance = self._live.get(state["episode_id"])
        if instance is None:
            raise RuntimeError("the episode's OpenEnv instance is gone (it belongs to another job)")
        obs = instance.step(self.action_cls(**{self.action_field: turn}))
        state = {**state, "steps": state["steps"] + 1}
        reward = {self.term: 0.0 if obs.reward is None else float(obs.reward)}
        if obs.done:
            self._close(state["episode_id"])
            return Reply(state, reward=reward)
        return Reply(state, self.template.format(self._text(obs)), reward=reward)

    def _text(self, obs) -> str:
        field = _one_field(type(obs), self.observation_field, "observation")
        value = getattr(obs, field)
        return value if isinstance(value, str) else json.dumps(value, default=str)

    def _close(self, episode_id: str) -> None:
        instance = self._live.pop(episode_id, None)
        close = getattr(instance, "close", None)
        if callable(close):
            close()

"""Environments: a rollout that acts. An episode is a sequence of model
turns; after each one the environment answers with an observation (a tool's
output, a game's reply, a user's turn) or ends the episode.

The whole episode is one trained sequence: the prompt, then model turns and
observations in order, as the engine saw them. Observation tokens keep
log-prob 0 and the engine's version when they were appended, and never reach
the loss (`Sample.loss_mask` False), the same bookkeeping as forced
interruption text; every model token keeps its own log-prob and version, so
a turn that starts after a weight sync is stamped with the new version and
the staleness bound holds for the oldest trained token. Limits: the
response's `max_new_tokens` counts every token of the episode (model and
observation: what the engine's context must hold), `max_turns` counts model
turns; an episode stopped by either ends with finish_reason 'length'
(truncated, counted as such). Length reward terms read the model's tokens
only (`Sample.model_tokens`).

An environment here is engine-free and synchronous: `start(row)` gives the
episode's JSON state, `step(state, turn_text)` the reply to one model turn.
The state is JSON so that a partial rollout carries an episode mid-way into
a later job (and into a checkpoint) and continues it exactly once. A turn
ends at the model's end-of-sequence token or at one of the environment's
`stop` strings, each of which must be one token of the model's vocabulary
(the engine stops on token ids; it does not detokenize while sampling).

A recipe names one in `rollout.env.name`: a key of `ENVIRONMENTS` or
'package.module:Class'.
"""
from __future__ import annotations

import ast
import importlib
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol


@dataclass
class Reply:
    """An environment's answer to one model turn."""

    state: dict[str, Any]  # JSON-safe state after this turn
    observation: Optional[str] = None  # text the model reads next; None: the episode ends
    tool_call: bool = False  # the turn called a tool
    error: bool = False  # ... and the call failed (the error is the observation)
    # reward terms this turn earned, by name: summed over the episode's turns and
    # added by the reward hub to the row's own reward (weights: rewards.env_terms);
    # None: the environment could not score it (the sample is masked, not scored 0)
    reward: dict[str, Optional[float]] = field(default_factory=dict)


class Environment(Protocol):
    stop: tuple[str, ...]  # strings that end a model turn besides end-of-sequence
    # False: the state lives in this object, not in the JSON (an adapted library's
    # environment); an episode carried into another job starts again, counted
    # (Episode.restarts). Absent: True.
    json_state: bool

    def start(self, row: dict[str, Any]) -> dict[str, Any]:
        """The episode's state before the first model turn."""

    def step(self, state: dict[str, Any], turn: str) -> Reply:
        """The reply to one model turn (`turn`: its text)."""


# ---- a calculator -------------------------------------------------------------------
_OPS: dict[type, Callable] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_MAX_DIGITS = 64  # operands and results longer than this are an error, not a slow bignum


def calculate(expression: str) -> int:
    """The value of an integer expression of + - * // % and parentheses;
    ValueError naming what is not allowed."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot parse {expression.strip()[:40]!r}") from None

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            out = node.value
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            out = -value(node.operand) if isinstance(node.op, ast.USub) else value(node.operand)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _OPS:
                raise ValueError(f"not allowed: {type(node.op).__name__}")
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and right == 0:
                raise ValueError("division by zero")
            out = _OPS[type(node.op)](left, right)
        else:
            raise ValueError(f"not allowed: {type(node).__name__}")
        if len(str(abs(out))) > _MAX_DIGITS:
            raise ValueError(f"a number longer than {_MAX_DIGITS} digits")
        return out

    return value(tree.body)


def tagged_call(turn: str, open_tag: str, close_tag: str) -> Optional[str]:
    """What a turn that ends with `open_tag ... close_tag` asks a tool (the text
    after the last open tag), or None when the turn calls no tool."""
    body = turn.rstrip()
    if not body.endswith(close_tag) or open_tag not in body:
        return None
    return body[body.rindex(open_tag) + len(open_tag):-len(close_tag)]


class Calculator:
    """A model turn that ends with `<calc>EXPR</calc>` gets
    `<result>VALUE</result>` (or `<result>error: ...</result>`); any other
    turn ends the episode, and the reward hub scores the whole response.
    All four tags are options."""

    def __init__(self, open_tag: str = "<calc>", close_tag: str = "</calc>", result_open: str = "<result>",
                 result_close: str = "</result>"):
        self.open_tag, self.close_tag = open_tag, close_tag
        self.result_open, self.result_close = result_open, result_close
        self.stop = (close_tag,)

    def start(self, row: dict[str, Any]) -> dict[str, Any]:
        return {}  # stateless: the episode counts calls and errors (Episode.tool_calls, tool_errors)

    def step(self, state: dict[str, Any], turn: str) -> Reply:
        expression = tagged_call(turn, self.open_tag, self.close_tag)
        if expression is None:
            return Reply(state)
        try:
            result, error = str(calculate(expression)), False
        except ValueError as err:
            result, error = f"error: {err}", True
        return Reply(state, f"{self.result_open}{result}{self.result_close}", tool_call=True, error=error)


class ReasoningGym:
    """A reasoning-gym task as a single-turn environment: the model's one turn
    is scored by the task's own scorer (rewards.reasoning_gym: the last
    `<answer>...</answer>`) and the episode ends with the term
    `reasoning_gym`. The row is a reasoning_gym task's (its `meta` carries the
    library's entry); a row without one is the environment's failure (masked).
    The scorer runs in the rollout worker; the hub's `reasoning_gym` kind runs
    the same scorer on killable workers."""

    stop: tuple[str, ...] = ()

    def start(self, row: dict[str, Any]) -> dict[str, Any]:
        entry = (row.get("meta") or {}).get("reasoning_gym")
        if not isinstance(entry, dict):
            raise ValueError("the row has no reasoning-gym entry (meta.reasoning_gym): not a reasoning_gym task's")
        return {"entry": entry}

    def step(self, state: dict[str, Any], turn: str) -> Reply:
        from rewards.reasoning_gym import score

        return Reply(state, reward={"reasoning_gym": score(None, turn, None, {"reasoning_gym": state["entry"]})})


def _python_tool(**options) -> Environment:
    from rollout.python_tool import PythonTool  # the sandbox's imports only where it is used

    return PythonTool(**options)


def _openenv(**options) -> Environment:
    from rollout.openenv_env import OpenEnvAdapter  # openenv-core only where it is used (an extra)

    return OpenEnvAdapter(**options)


ENVIRONMENTS: dict[str, Callable[..., Environment]] = {
    "calculator": Calculator, "python": _python_tool, "reasoning_gym": ReasoningGym, "openenv": _openenv}


def import_target(target: str, what: str) -> Any:
    """The object 'package.module:Name' names, imported where the rollout runs
    (this project, an installed package, or a module on the worker's path);
    ValueError naming `what` and the target when it cannot be."""
    module, _, attr = target.rpartition(":")
    if not module or not attr:
        raise ValueError(f"{what} {target!r} is not 'package.module:Name'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{what} {target!r} cannot be imported ({type(err).__name__}: {err})") from None


def make_env(name: str, options: Optional[dict[str, Any]] = None) -> Environment:
    """The environment `name` names: a key of ENVIRONMENTS, or 'package.module:Class'
    (`import_target`), built with `options`."""
    if ":" in name:
        cls = import_target(name, "environment")
    elif name in ENVIRONMENTS:
        cls = ENVIRONMENTS[name]
    else:
        raise ValueError(f"unknown environment {name!r}; known: {', '.join(sorted(ENVIRONMENTS))}, "
                         "or 'package.module:Class'")
    return cls(**(options or {}))

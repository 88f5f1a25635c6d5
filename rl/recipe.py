"""Load a recipe: YAML files (layered with `extends:`) plus dotted command-line
overrides, validated into the typed configs each component owns.

Nothing here imports torch, Ray or vLLM: a recipe validates in well under a
second. Every mistake (a missing file, bad YAML, an unknown key, a wrong type,
an impossible value) becomes one `UserError` line naming the key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.config_marks import marked_keys
from core.errors import UserError
from rewards.config import RewardsConfig
from rl.algo.config import AlgoConfig
from rl.base.config import ModelConfig
from rl.data.config import DataConfig
from rl.learner.config import LearnerConfig
from rl.monitor.config import MonitorConfig
from rl.run_config import ClusterConfig, EvalConfig, PipelineConfig, RunConfig
from rollout.config import RolloutConfig


class Recipe(BaseModel):
    """A whole run: data, model, algorithm and cluster shape."""

    model_config = ConfigDict(extra="forbid")

    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    algo: AlgoConfig = Field(default_factory=AlgoConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    @model_validator(mode="after")
    def _deterministic_is_synchronous(self) -> "Recipe":
        if self.run.deterministic and self.pipeline.max_off_policy_steps != 0:
            raise ValueError("run.deterministic needs pipeline.max_off_policy_steps=0 (asynchronous "
                             "generation depends on timing)")
        return self

    @model_validator(mode="after")
    def _one_head_switch(self) -> "Recipe":
        self.model.engine_config(self.rollout.engine)  # refuses rollout.engine.fp32_lm_head on its own
        return self

    @model_validator(mode="after")
    def _ppo_mode(self) -> "Recipe":
        if self.pipeline.mode != "ppo":
            return self
        if self.pipeline.max_off_policy_steps != 0:
            raise ValueError("pipeline.mode 'ppo' generates whole cycles with one set of weights: set "
                             "pipeline.max_off_policy_steps=0")
        if self.algo.dynamic_sampling:
            raise ValueError("algo.dynamic_sampling works with pipeline.mode 'pipeline' only")
        if getattr(self.rollout, "partial_segment_tokens", None):
            raise ValueError("rollout.partial_segment_tokens works with pipeline.mode 'pipeline' only")
        return self


# Read off the fields' marks (core.config_marks): the keys `asymptote resume` may
# change, and the keys that do not separate recipes (seeds, bookkeeping) for
# `compare` and `backtest`, each a dotted key or a 'section.' prefix.
RESUMABLE = marked_keys(Recipe, resume=True)
SEED_KEYS = marked_keys(Recipe, recipe=False)


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    raw = _read_layers(Path(path), seen=())
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value)
    return validate(raw, source=str(path))


def validate(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"{source}: " + "; ".join(_describe(e) for e in err.errors())) from None


def to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def _describe(e: dict) -> str:
    key = ".".join(str(p) for p in e["loc"])
    if not key:  # a rule across sections
        return e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    got = e.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    return f"key '{key}': {e['msg']}{shown}"


def _read_layers(path: Path, seen: tuple) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"recipe file not found: {path}")
    if path.resolve() in seen:
        raise UserError(f"{path}: 'extends' forms a cycle")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}") from None
    if data is None:
        raise UserError(f"{path}: the recipe is empty")
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe must be a mapping of sections")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = _read_layers((path.parent / parent), seen + (path.resolve(),))
    return _deep_merge(base, data)


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise UserError(f"override {item!r}: expected dotted.key=value")
    key, text = item.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"override {item!r}: empty key")
    try:
        return key, yaml.safe_load(text)
    except yaml.YAMLError:
        return key, text


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"override '{key}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value

"""The one reward interface: a reward function is a plain callable
`(sample: dict) -> RewardResult`, built per config and registered by kind.

A sample is a plain dict: {"kind", "response", "answer" (math), "tests"
(code), "length" (optional token count)}; other keys are carried along.
`details` always has `correct` (bool for verifiable kinds, None otherwise),
`terms` (term name -> unweighted score) and `timeout`; `error` when a sample
could not be scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

Sample = dict[str, Any]
RewardFn = Callable[[Sample], "RewardResult"]


@dataclass
class RewardResult:
    """Score of one sample and why."""

    score: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"reward": self.score, "details": self.details}


def failed(error: str, *, timeout: bool = False, correct: bool | None = None) -> RewardResult:
    """A zero score carrying the reason."""
    details: dict[str, Any] = {"correct": correct, "timeout": timeout, "error": error, "terms": {}}
    return RewardResult(0.0, details)


# kind -> factory(cfg) -> RewardFn. Filled by the kind modules on import.
_FACTORIES: dict[str, Callable[[Any], RewardFn]] = {}


def register_reward(kind: str):
    """Decorator: `@register_reward("math") def make(cfg) -> RewardFn`."""

    def wrap(factory):
        if kind in _FACTORIES:
            raise ValueError(f"reward kind {kind!r} registered twice")
        _FACTORIES[kind] = factory
        return factory

    return wrap


def build_reward(kind: str, cfg) -> RewardFn:
    """The reward function of `kind` for config `cfg` (a RewardsConfig)."""
    import rewards.code  # noqa: F401  (registration side effects)
    import rewards.format  # noqa: F401
    import rewards.math  # noqa: F401

    if kind not in _FACTORIES:
        raise KeyError(f"unknown reward kind {kind!r} (known: {', '.join(sorted(_FACTORIES))})")
    return _FACTORIES[kind](cfg)


def registered_kinds() -> list[str]:
    import rewards.code  # noqa: F401
    import rewards.format  # noqa: F401
    import rewards.math  # noqa: F401

    return sorted(_FACTORIES)

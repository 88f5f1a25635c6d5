"""What rollout produces: scored samples grouped by prompt.

These plain dataclasses are the one format that flows from rollout workers
(via the reward hub) to the learner's batch builder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class Sample:
    token_ids: list[int]
    logprobs: list[float]  # log pi_gen of each sampled token
    versions: list[int]  # policy version that produced each token
    finish_reason: str  # "stop" | "length"
    text: str = ""
    reward: float = 0.0
    correct: Optional[bool] = None
    reward_details: dict[str, Any] = field(default_factory=dict)

    @property
    def min_version(self) -> int:
        return min(self.versions) if self.versions else -1

    @property
    def max_version(self) -> int:
        return max(self.versions) if self.versions else -1


@dataclass
class Group:
    """All samples drawn for one prompt (the unit of group-relative baselines)."""

    prompt: dict[str, Any]  # the dataset row: prompt, answer, kind, ...
    prompt_ids: list[int]
    samples: list[Sample]


@dataclass
class RolloutBatch:
    """The groups generated for one training step (or one evaluation)."""

    step: int
    groups: list[Group]
    gen_seconds: float = 0.0
    worker_cpu_seconds: float = 0.0  # core-seconds the rollout processes used

    @property
    def samples(self) -> list[Sample]:
        return [s for g in self.groups for s in g.samples]

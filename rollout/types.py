"""What rollout produces: scored samples grouped by prompt.

These plain dataclasses are the one format that flows from rollout workers
(via the reward hub) to the learner's batch builder. A group with a partial
sample (partial rollouts: a response cut at the per-iteration segment budget)
is unscored; the controller carries it to the next iteration, and keeps it in
its checkpoint through `Group.to_dict` / `Group.from_dict`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional


@dataclass
class Episode:
    """A multi-turn sample's environment bookkeeping (rollout/env.py)."""

    state: dict[str, Any]  # the environment's JSON state after the last turn it answered
    turns: int = 1  # model turns so far (the current one included)
    turn_start: int = 0  # response position where the current model turn began
    observation_tokens: int = 0  # tokens the environment appended (never trained)
    tool_calls: int = 0
    tool_errors: int = 0
    failed: Optional[str] = None  # the environment itself raised: the sample is masked, not scored 0
    reward: dict[str, Optional[float]] = field(default_factory=dict)  # terms the environment awarded, summed per name
    restarts: int = 0  # times the episode was started again (an environment whose state is not JSON, resumed)


@dataclass
class Sample:
    token_ids: list[int]
    logprobs: list[float]  # log pi_gen of each token (0.0 on forced text)
    versions: list[int]  # policy version that produced each token
    finish_reason: str  # "stop" | "length" | "partial" (cut at the segment budget, to be continued)
    text: str = ""
    reward: Optional[float] = 0.0  # None when masked
    reward_masked: Optional[str] = None  # "error" | "timeout": the reward failed; the sample is not scored
    correct: Optional[bool] = None
    reward_details: dict[str, Any] = field(default_factory=dict)
    # Which response tokens train. None: all of them. False marks a token the
    # policy did not sample in this iteration: forced interruption text, or a
    # segment generated in an earlier iteration (only the newest is on-policy).
    loss_mask: Optional[list[bool]] = None
    interrupted: bool = False  # the interruption text was appended at `interrupt_at`
    interrupt_at: Optional[int] = None  # drawn interruption point (response position); kept across segments
    requests: int = 1  # engine requests that produced it; a continuation seeds with seed + requests * prime
    episode: Optional[Episode] = None  # multi-turn: the environment's side of it; None = one turn

    @property
    def model_tokens(self) -> int:
        """Response tokens the model sampled or was forced (observations left out)."""
        return len(self.token_ids) - (self.episode.observation_tokens if self.episode else 0)

    @property
    def min_version(self) -> int:
        return min(self.versions) if self.versions else -1

    @property
    def max_version(self) -> int:
        return max(self.versions) if self.versions else -1

    @property
    def finished(self) -> bool:
        return self.finish_reason != "partial"

    @property
    def scored(self) -> bool:
        """It has a reward (not masked)."""
        return self.reward_masked is None

    def trainable_mask(self) -> list[bool]:
        """One bool per response token: True where the loss applies (none for a masked sample)."""
        if not self.scored:
            return [False] * len(self.token_ids)
        return [True] * len(self.token_ids) if self.loss_mask is None else list(self.loss_mask)

    @property
    def trainable_min_version(self) -> int:
        """Oldest version among trained tokens (what the staleness bound is
        about: masked tokens never reach the loss); -1 if none trains."""
        mask = self.trainable_mask()
        vs = [v for v, m in zip(self.versions, mask) if m]
        return min(vs) if vs else -1


@dataclass
class Group:
    """All samples drawn for one prompt (the unit of group-relative baselines)."""

    prompt: dict[str, Any]  # the dataset row: prompt, answer, kind, ...
    prompt_ids: list[int]
    samples: list[Sample]

    @property
    def unfinished(self) -> bool:
        """Some sample is partial: the group is not scored and not trained yet."""
        return any(not s.finished for s in self.samples)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the dataset row and reward details must be JSON-safe,
        which the built-in tasks and reward functions are)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Group":
        return cls(prompt=dict(d["prompt"]), prompt_ids=list(d["prompt_ids"]),
                   samples=[_sample(s) for s in d["samples"]])


def _sample(d: dict[str, Any]) -> Sample:
    episode = d.get("episode")
    return Sample(**{**d, "episode": None if episode is None else Episode(**episode)})


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

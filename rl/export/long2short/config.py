"""Settings of `asymptote export long2short`, one model per concern, next to
the code that reads them (evaluate.py, merge.py, rs.py, dpo.py, rl_recipe.py).
Imports only pydantic and the standard library.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Method = Literal["merge", "shortest-rs", "dpo", "rl"]
METHODS: tuple[str, ...] = ("merge", "shortest-rs", "dpo", "rl")


class EvalSettings(BaseModel):
    """How before and after are measured: the same for every method, so a
    run's trials are comparable (held-out arith prompts, mean@k)."""

    model_config = ConfigDict(extra="forbid")

    prompts: int = Field(200, gt=0, le=1000, description="First N held-out validation prompts.")
    k: int = Field(4, gt=0, description="Samples per prompt; accuracy is mean@k.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the measurement.")
    max_new_tokens: int = Field(128, gt=0, description="Longest sampled response (a truncated one is wrong).")
    seed: int = Field(0, ge=0, description="Seed of the samples (request i, sample j draws with seed + i*k + j).")


class SampleSettings(BaseModel):
    """Samples drawn from the long model on training prompts (shortest-rs, dpo)."""

    model_config = ConfigDict(extra="forbid")

    prompts: int = Field(512, gt=0, description="Training prompts sampled (never a validation prompt).")
    n: int = Field(8, ge=2, description="Samples per prompt.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    max_new_tokens: int = Field(128, gt=0, description="Longest sampled response.")
    seed: int = Field(1, ge=0, description="Seed of the training prompts and of the samples.")


class TrainSettings(BaseModel):
    """The TRL trainer's schedule (SFTTrainer for shortest-rs, DPOTrainer for dpo)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(150, gt=0, description="Optimizer steps.")
    batch_size: int = Field(32, gt=0, description="Examples (SFT) or pairs (DPO) per step.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (cosine decay, 10 warm-up steps at most).")
    beta: float = Field(0.1, gt=0, description="DPO only: the KL strength beta.")
    seed: int = Field(0, ge=0, description="Seed of the batch order.")


class PairSettings(BaseModel):
    """DPO pairs (pairs.dpo_pairs)."""

    model_config = ConfigDict(extra="forbid")

    length_ratio: float = Field(
        1.5, gt=1, description="A correct answer is a negative when at least this many times as long as the positive.")
    max_pairs_per_prompt: int = Field(4, gt=0, description="At most this many pairs per prompt (long correct ones first, then wrong ones).")


class MergeSettings(BaseModel):
    """Weight averaging: alpha * long + (1 - alpha) * short, for each alpha."""

    model_config = ConfigDict(extra="forbid")

    alphas: list[float] = Field([0.25, 0.5, 0.75], min_length=1, description="Weights of the long model to try.")
    max_accuracy_drop: float = Field(
        0.03, ge=0, le=1,
        description="The alpha written to OUT_DIR: the fewest mean tokens among those within this much accuracy "
                    "of the long model (else the most accurate).")

    @field_validator("alphas")
    @classmethod
    def _in_unit(cls, alphas: list[float]) -> list[float]:
        for a in alphas:
            if not 0 <= a <= 1:
                raise ValueError(f"alpha {a} is outside [0, 1]")
        return sorted(set(alphas))


class RLSettings(BaseModel):
    """long2short RL: the recipe run from the source's best accuracy-per-token checkpoint."""

    model_config = ConfigDict(extra="forbid")

    recipe: str = Field("recipes/long2short.yaml", description="Recipe file (Kimi length reward, small max length).")
    overrides: list[str] = Field([], description="Dotted recipe overrides (run.steps=20 ...).")

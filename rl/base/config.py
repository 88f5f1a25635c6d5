"""Config of a tiny base model the project builds itself (no hub is reachable).

A base is named in a recipe either by the name of a built-in spec (for example
`tiny-arith`: its committed weights in rl/base/weights, or built and cached by
`asymptote base build tiny-arith`) or by a path to any local Hugging Face
model folder.

`ModelConfig.fp32_lm_head` is the one recipe switch for the LM head's
precision on both sides (learner and rollout engines): it lives with the model
because the two sides must compute the same head, and a switch per side could
disagree. See docs/precision.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.config_marks import Mark

if TYPE_CHECKING:
    from rollout.config import EngineConfig


class ArchConfig(BaseModel):
    """Qwen2-architecture shape of a tiny model."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: int = Field(128, gt=0, description="Model width.")
    num_layers: int = Field(3, gt=0, description="Decoder layers.")
    num_heads: int = Field(4, gt=0, description="Attention heads (head dim = hidden/heads; vLLM CPU needs 32, 64, ...).")
    num_kv_heads: int = Field(4, gt=0, description="Key/value heads (grouped-query attention when fewer than heads).")
    ffn_size: int = Field(384, gt=0, description="MLP intermediate size.")
    max_positions: int = Field(256, gt=0, description="Longest prompt+response in tokens.")
    tie_embeddings: bool = Field(True, description="Share input embedding and LM head.")

    @model_validator(mode="after")
    def _heads_divide(self) -> "ArchConfig":
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        return self


class ModelConfig(BaseModel):
    """Which base model a recipe starts from."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    base: str = Field("tiny-arith", min_length=1, description="A built-in base name (the committed base in rl/base/weights when its spec hash matches, else built and cached on first use) or a local Hugging Face model folder.")
    fp32_lm_head: bool = Field(
        False,
        description="Compute the LM head's matmul (the logits) in float32 on the learner and on every "
                    "rollout engine, as ScaleRL does to cut the train-inference log-prob mismatch under "
                    "bfloat16. The engines' rollout.engine.fp32_lm_head follows this switch. A no-op on a "
                    "side that runs in float32 (learner.dtype, rollout.engine.dtype).")

    def engine_config(self, engine: "EngineConfig") -> "EngineConfig":
        """The engine config a rollout worker is given: `engine` with the LM-head
        switch taken from here. Raises ValueError when `engine.fp32_lm_head` is
        on while this switch is off: the engines would run a float32 head and
        the learner a bfloat16 one (the recipe set the engine's copy alone)."""
        if engine.fp32_lm_head and not self.fp32_lm_head:
            raise ValueError("rollout.engine.fp32_lm_head is on but model.fp32_lm_head is off: set "
                             "model.fp32_lm_head=true (one switch for the learner and the engines)")
        return engine.model_copy(update={"fp32_lm_head": self.fp32_lm_head})

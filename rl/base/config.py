"""Config of a tiny base model the project builds itself (no hub is reachable).

A base is named in a recipe either by the name of a built-in spec (for example
`tiny-arith`, built and cached by `asymptote base build tiny-arith`) or by a
path to any local Hugging Face model folder.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


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

    base: str = Field("tiny-arith", min_length=1, description="A built-in base name (built and cached on first use) or a local Hugging Face model folder.")

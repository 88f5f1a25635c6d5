"""Which prompts a run trains and validates on.

`task="arith"` is the built-in synthetic addition task (rl/data/arith.py),
generated from `seed`; `task="file"` reads local JSONL or Parquet files with
columns `prompt`, `answer` and optionally `kind`, `tests`, `meta`.
Imports only pydantic, so a recipe validates without torch.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DataConfig(BaseModel):
    """Training and validation prompts."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["arith", "file"] = Field(
        "arith", description="'arith': built-in addition task; 'file': prompts from train_path/val_path.")
    train_path: str | None = Field(
        None, description="JSONL or Parquet file of training prompts (task='file' only).")
    val_path: str | None = Field(
        None, description="JSONL or Parquet file of validation prompts (task='file'); "
                          "when absent, val_size rows are held out of train_path after a seeded shuffle.")
    val_size: int = Field(200, gt=0, description="Number of held-out validation prompts.")
    train_size: int = Field(
        20000, gt=0, description="Number of distinct training prompts generated (task='arith').")
    seed: int = Field(0, ge=0, description="Seed of the training prompts and their order.")
    digits_min: int = Field(2, ge=1, le=9, description="Fewest digits of an operand (task='arith').")
    digits_max: int = Field(4, ge=1, le=9, description="Most digits of an operand (task='arith').")

    @model_validator(mode="after")
    def _consistent(self) -> "DataConfig":
        if self.digits_min > self.digits_max:
            raise ValueError("digits_min must not exceed digits_max")
        if self.task == "file" and not self.train_path:
            raise ValueError("task='file' needs train_path")
        if self.task == "arith" and (self.train_path or self.val_path):
            raise ValueError("train_path/val_path are only read with task='file'")
        return self

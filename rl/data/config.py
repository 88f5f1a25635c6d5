"""Which prompts a run trains and validates on, and in which order it draws them.

`task="arith"` is the built-in synthetic addition task (rl/data/arith.py),
generated from `seed`; `task="file"` reads local JSONL or Parquet files with
columns `prompt`, `answer` and optionally `kind`, `tests`, `meta`.

Batch shaping (rl/data/sampler.py) is three switches here: `sampling` picks the
draw ('uniform' seeded epochs, Kimi k1.5's 'prioritised' ∝ 1 − success and
'curriculum' easy to hard), and `npr_threshold` turns on ScaleRL's
No-Positive-Resampling. (Zero-variance filtering is the algorithm's:
`algo.zero_variance_filter`.)
Imports only pydantic, so a recipe validates without torch.
"""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from core.config_marks import Mark, not_recipe

SamplingName = Literal["uniform", "prioritised", "curriculum"]

# settings read only by one sampling mode: (field, the mode that reads it)
_MODE_FIELDS = (("prioritised_floor", "prioritised"), ("curriculum_warmup_epochs", "curriculum"),
                ("curriculum_hard_fraction", "curriculum"))


def _bad(message: str) -> PydanticCustomError:
    return PydanticCustomError("data_setting", message)


class DataConfig(BaseModel):
    """Training and validation prompts, and how training prompts are drawn."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    task: Literal["arith", "file"] = Field(
        "arith", description="'arith': built-in addition task; 'file': prompts from train_path/val_path.")
    train_path: str | None = Field(
        None, description="JSONL or Parquet file of training prompts (task='file' only).")
    val_path: str | None = Field(
        None, description="JSONL or Parquet file of validation prompts (task='file'); "
                          "when absent, val_size rows are held out of train_path after a seeded shuffle.")
    val_size: int = Field(
        200, gt=0, description="Number of validation prompts (task='file' with val_path: its first val_size rows).")
    train_size: int = Field(
        20000, gt=0, description="Number of distinct training prompts generated (task='arith').")
    seed: Annotated[int, not_recipe] = Field(
        0, ge=0, description="Seed of the generated training prompts (task='arith'; its validation prompts are a fixed "
                             "set) or of the held-out split (task='file' without val_path); "
                             "the draw order follows run.seed.")
    digits_min: int = Field(2, ge=1, le=9, description="Fewest digits of an operand (task='arith').")
    digits_max: int = Field(4, ge=1, le=9, description="Most digits of an operand (task='arith').")

    sampling: SamplingName = Field(
        "uniform",
        description="How training prompts are drawn. 'uniform': every prompt once per epoch, in a fresh seeded "
                    "shuffle each epoch. 'prioritised' (Kimi k1.5): each batch drawn without replacement with "
                    "probability ∝ max(prioritised_floor, 1 − s), s the prompt's running pass rate. 'curriculum' "
                    "(Kimi k1.5): each epoch ordered easy to hard by difficulty (the row's meta.difficulty when "
                    "the rows have one, else the observed failure rate 1 − s); after curriculum_warmup_epochs "
                    "only the hardest curriculum_hard_fraction of the pool.")
    npr_threshold: Optional[float] = Field(
        None, gt=0, le=1,
        description="No-Positive-Resampling (ScaleRL; the paper uses 0.9): a prompt whose running pass rate "
                    "(correct / samples over the whole run) reaches this after npr_min_samples samples leaves the "
                    "pool for good. None: off.")
    npr_min_samples: int = Field(
        16, ge=1,
        description="No-Positive-Resampling: samples a prompt needs before it can retire. 16 is one ScaleRL group; "
                    "a prompt that truly passes 70% of the time shows >= 0.9 on 16 samples 2.6% of the time "
                    "(5.8% on 8, 24% on 4).")
    prior_success: float = Field(
        0.5, ge=0, le=1,
        description="The pass rate assumed for a prompt not yet observed ('prioritised' weights, and "
                    "'curriculum' without meta.difficulty). 0.5: no opinion either way.")
    prioritised_floor: float = Field(
        0.1, gt=0, le=1,
        description="'prioritised': the least weight a prompt gets, so a prompt that looks solved is still "
                    "drawn now and then (1 − s from 8 all-correct samples is 0, yet a true failure rate of 0.25 "
                    "gives 8/8 10% of the time). 1 = uniform without replacement.")
    curriculum_warmup_epochs: int = Field(
        1, ge=0,
        description="'curriculum': epochs over the whole pool (easy to hard) before the hard-only phase.")
    curriculum_hard_fraction: float = Field(
        0.5, gt=0, le=1,
        description="'curriculum': after the warm-up, each epoch takes only this hardest fraction of the "
                    "remaining pool (rounded up; 1 = the whole pool every epoch), still easy to hard.")

    @model_validator(mode="after")
    def _consistent(self) -> "DataConfig":
        if self.digits_min > self.digits_max:
            raise _bad("digits_min must not exceed digits_max")
        if self.task == "file" and not self.train_path:
            raise _bad("train_path: task='file' needs train_path")
        if self.task == "arith" and (self.train_path or self.val_path):
            raise _bad("train_path/val_path are only read with task='file'")
        # a setting counts as given when it differs from its default: a dumped
        # config (run_dir/config.yaml) sets every key and must load again
        if self.npr_threshold is None and self._given("npr_min_samples"):
            raise _bad("npr_min_samples is only read with npr_threshold set (No-Positive-Resampling is off)")
        if self.sampling == "uniform" and self._given("prior_success"):
            raise _bad("prior_success is only read with sampling 'prioritised' or 'curriculum'")
        for name, mode in _MODE_FIELDS:
            if self.sampling != mode and self._given(name):
                raise _bad(f"{name} is only read with sampling '{mode}' (sampling is '{self.sampling}')")
        return self

    def _given(self, name: str) -> bool:
        return getattr(self, name) != type(self).model_fields[name].default

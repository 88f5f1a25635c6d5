"""Settings of the scaling monitor (compute ledger axis, live sigmoid refit).

Imports only pydantic and the standard library so a recipe validates fast.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.config_marks import Mark

X_AXES = ("device_hours", "device_seconds", "flops", "tokens")


class MonitorConfig(BaseModel):
    """How the controller fits R(C) after each evaluation."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=True, recipe=False)  # the fit and its warnings: nothing that is trained

    enabled: bool = Field(True, description="Refit the sigmoid after every evaluation.")
    x_axis: Literal["device_hours", "device_seconds", "flops", "tokens"] = Field(
        "device_hours",
        description=(
            "Compute axis C of the fit: accelerator-hours (GPU-hours on GPU, CPU core-hours actually "
            "used on CPU; the paper's axis), accelerator-seconds, FLOPs (analytic), or tokens "
            "(generated + trained). Read from the ledger column compute/<x_axis>."
        ),
    )
    target_budget: float | None = Field(
        None,
        description="Compute (in x_axis units) at which to forecast the pass rate; None = 4x the largest seen.",
    )
    burn_in_fraction: float | int = Field(
        0.05,
        description=(
            "Early points left out of the fit. A float in [0, 1) drops points below that fraction of the "
            "largest compute (the paper drops ~1.5k of 50-100k GPU-h); an int >= 1 drops that many "
            "leading evaluations. The step-0 evaluation is never dropped: it gives R0."
        ),
    )
    method: Literal["direct", "grid"] = Field(
        "direct", description="direct: one bounded least-squares fit; grid: the paper's A x C_mid grid."
    )
    bootstrap: int = Field(
        200, description="Bootstrap refits behind the intervals (per-prompt results resampled when the run "
                         "records them, else residuals); 0 = Laplace approximation (cheaper)."
    )
    resample: Literal["samples", "prompts"] = Field(
        "samples", description=(
            "What the intervals are for: 'samples' = this evaluation set (each prompt's k samples drawn again; "
            "the pass rate the run itself will report), 'prompts' = a new draw of prompts from the task "
            "(wider: adds which prompts were picked). See rl/monitor/fit_noise.py."))
    prior_B: bool = Field(
        False, description=(
            "Weakly informative log-normal prior on B from the published ScaleRL fits (median 1.64, log-sd "
            "0.5). Off by default: it pulls slow curves (B ~ 1.1) up a little; docs/monitor.md has the numbers."))
    interval: float = Field(0.9, description="Two-sided interval level for A, B, C_mid and the forecast.")
    min_points: int = Field(5, description="Evaluations (after burn-in, excluding step 0) before the first fit.")

    truncation_warn: float | None = Field(
        0.10, ge=0, le=1,
        description="Warn when more than this fraction of a step's responses hit rollout.max_new_tokens "
                    "(ScaleRL saw 10-15% precede instability); None never warns. The rate is logged each step "
                    "as rollout/truncation_rate either way.")
    mask_warn: float | None = Field(
        0.10, ge=0, le=1,
        description="Warn when more than this fraction of a step's samples have no reward (the reward errored or "
                    "timed out: masked out of the loss); None never warns. Counts are logged each step as "
                    "reward/masked, reward/errors, reward/timeouts (and per kind) either way.")

    @field_validator("target_budget")
    @classmethod
    def _positive_budget(cls, v):
        if v is not None and not v > 0:
            raise ValueError("target_budget must be positive")
        return v

    @field_validator("burn_in_fraction")
    @classmethod
    def _burn_in(cls, v):
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 0:
                raise ValueError("a burn-in count must be >= 0")
            return v
        if not 0.0 <= v < 1.0:
            raise ValueError("a burn-in fraction must be in [0, 1)")
        return v

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap(cls, v):
        if v < 0 or 0 < v < 20:
            raise ValueError("bootstrap must be 0 (Laplace) or at least 20 refits")
        return v

    @field_validator("interval")
    @classmethod
    def _interval(cls, v):
        if not 0.5 <= v < 1.0:
            raise ValueError("interval must be in [0.5, 1)")
        return v

    @field_validator("min_points")
    @classmethod
    def _min_points(cls, v):
        if v < 4:
            raise ValueError("min_points must be >= 4 (three parameters plus noise)")
        return v

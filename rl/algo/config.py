"""Config of the RL algorithm: which loss, which advantage, how tokens are
weighted. Names here must match the registries in `rl.algo.losses` and
`rl.algo.advantages` (a test checks both lists agree)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

LossName = Literal["grpo", "cispo"]
AdvantageName = Literal["grpo", "batch_std", "mean_only"]
AggregationName = Literal["token_mean", "prompt_mean", "sequence_mean"]


class AlgoConfig(BaseModel):
    """Policy-gradient loss and advantage estimation."""

    model_config = ConfigDict(extra="forbid")

    loss: LossName = Field("cispo", description="Loss from the registry: 'grpo' (clipped ratio) or 'cispo' (truncated-IS REINFORCE).")
    advantage: AdvantageName = Field(
        "batch_std",
        description="'grpo': (r - group mean) / group std; 'batch_std': (r - group mean) / std over the batch (ScaleRL); 'mean_only': r - group mean.",
    )
    aggregation: AggregationName = Field(
        "token_mean",
        description="How per-token losses are averaged: over all response tokens of the batch, per prompt group then over prompts (ScaleRL), or per sequence then over sequences.",
    )
    clip_low: float = Field(0.2, ge=0, lt=1, description="GRPO: lower clip, ratio >= 1 - clip_low.")
    clip_high: float = Field(0.2, ge=0, description="GRPO: upper clip, ratio <= 1 + clip_high (DAPO clip-higher uses 0.28).")
    is_cap: Optional[float] = Field(
        4.0, gt=0,
        description="Truncated importance sampling cap eps_max on pi_train/pi_gen (CISPO's weight; for GRPO an extra truncated-IS factor, None to disable).",
    )
    zero_variance_filter: bool = Field(True, description="Drop prompt groups whose samples all got the same reward (they carry no gradient).")
    adv_eps: float = Field(1e-6, gt=0, description="Added to standard deviations before dividing.")

    @model_validator(mode="after")
    def _check(self) -> "AlgoConfig":
        if self.loss == "cispo" and self.is_cap is None:
            raise ValueError("is_cap: CISPO needs a cap (eps_max), e.g. 4.0")
        return self

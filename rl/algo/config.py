"""Config of the RL algorithm: which loss, which advantage normalisation, how
token losses are aggregated, and whether the generator-trainer ratio is
truncated. Names here must match the registries in `rl.algo.losses` and
`rl.algo.advantages` (a test checks both lists agree).

Every published recipe is a combination of independent switches, not a loss
with hidden defaults of its own. The papers' settings (no KL term anywhere):

    paper                      loss     advantage   aggregation     other
    GRPO (DeepSeekMath)        grpo     group_std   sequence_mean   clip_low=clip_high=0.2
    DAPO (2503.14476)          dapo     group_std   token_mean      clip_high=0.28, zero_variance_filter
    Dr.GRPO (2503.20783)       dr_grpo  no_std      sequence_sum    norm_tokens = rollout.max_new_tokens
    GSPO (2507.18071)          gspo     group_std   sequence_mean   clip_low=3e-4, clip_high=4e-4
    ScaleRL (2510.13786)       cispo    batch_std   prompt_mean     is_cap in {4, 5, 8}, zero_variance_filter
    Kimi k1.5 (2501.12599)     kimi     no_std      sequence_mean   kimi_tau (the paper gives no value)

DAPO's dynamic sampling (`dynamic_sampling`) replaces zero-variance groups
with fresh prompts; its overlong penalty is a reward term, not a loss switch.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from core.config_marks import Mark

LossName = Literal["grpo", "dapo", "dr_grpo", "gspo", "cispo", "kimi"]
# 'grpo' and 'mean_only' are the earlier names of 'group_std' and 'no_std'
AdvantageName = Literal["group_std", "batch_std", "no_std", "grpo", "mean_only"]
AggregationName = Literal["token_mean", "sequence_mean", "prompt_mean", "sequence_sum"]


class AlgoConfig(BaseModel):
    """Policy-gradient loss, advantage normalisation and token aggregation."""

    model_config = ConfigDict(extra="forbid")
    marks: ClassVar[Mark] = Mark(resume=False, recipe=True)

    loss: LossName = Field(
        "cispo",
        description="Loss from the registry in rl/algo/losses.py: 'grpo', 'dapo', 'dr_grpo' (the same PPO-clip "
                    "surrogate on pi_train/pi_gen; the papers differ only in the other switches), 'gspo' "
                    "(sequence-level clipped ratio), 'cispo' (truncated-IS REINFORCE), 'kimi' (Kimi k1.5 "
                    "mirror-descent surrogate).",
    )
    advantage: AdvantageName = Field(
        "batch_std",
        description="Advantage normalisation; the baseline is always the group mean, A = r - mean(group). "
                    "'group_std': A / std(group) (GRPO; old name 'grpo'); 'batch_std': A / std(all A in "
                    "the batch) (ScaleRL); 'no_std': A itself (Dr.GRPO, Kimi; old name 'mean_only').",
    )
    aggregation: AggregationName = Field(
        "token_mean",
        description="How per-token losses are averaged: 'token_mean' over all response tokens of the batch "
                    "(DAPO); 'sequence_mean' per sequence, then over sequences (GRPO, GSPO); 'prompt_mean' per "
                    "prompt group, then over prompts (ScaleRL); 'sequence_sum' summed per sequence, divided by "
                    "the constant `norm_tokens` and the number of sequences (Dr.GRPO: no length normalisation).",
    )
    norm_tokens: Optional[int] = Field(
        None, gt=0,
        description="aggregation 'sequence_sum': the constant token count each sequence's summed loss is "
                    "divided by (Dr.GRPO uses the generation budget, rollout.max_new_tokens).",
    )
    clip_low: float = Field(0.2, ge=0, lt=1, description="grpo/dapo/dr_grpo/gspo: lower clip, ratio >= 1 - clip_low.")
    clip_high: float = Field(
        0.2, ge=0,
        description="grpo/dapo/dr_grpo/gspo: upper clip, ratio <= 1 + clip_high (DAPO's clip-higher: 0.28).",
    )
    is_cap: float = Field(
        4.0, gt=0,
        description="Truncation cap eps_max on the generator-trainer importance ratio: CISPO's weight "
                    "min(pi_train/pi_gen, is_cap), and every other loss's when `tis` is on.",
    )
    tis: bool = Field(
        False,
        description="Truncated importance sampling for any loss: the importance weight the loss puts on the "
                    "generator-trainer ratio is capped at is_cap (see rl/algo/losses.py for each loss). CISPO "
                    "truncates by definition, so for it this changes nothing.",
    )
    kimi_tau: Optional[float] = Field(
        None, gt=0,
        description="kimi: tau, the weight of the mirror-descent regulariser towards pi_gen (required there).",
    )
    dynamic_sampling: bool = Field(
        False,
        description="DAPO dynamic sampling: when zero-variance groups leave a step short, generate another batch of "
                    "prompts (and another) until the step has rollout.prompts_per_step informative groups.")
    dynamic_sampling_max_rounds: int = Field(
        4, ge=1, description="dynamic_sampling: most extra batches per step; a step still short trains on what it has "
                             "(logged as data/dynamic_short).")
    zero_variance_filter: bool = Field(True, description="Drop prompt groups whose samples all got the same reward (they carry no gradient).")
    adv_eps: float = Field(1e-6, gt=0, description="Added to standard deviations before dividing.")

    @model_validator(mode="after")
    def _check(self) -> "AlgoConfig":
        if self.loss == "kimi" and self.kimi_tau is None:
            raise PydanticCustomError("missing_setting", "kimi_tau: the kimi loss needs tau (the paper gives no value)")
        if self.aggregation == "sequence_sum" and self.norm_tokens is None:
            raise PydanticCustomError("missing_setting", "norm_tokens: aggregation 'sequence_sum' needs the constant "
                                      "divisor, e.g. rollout.max_new_tokens")
        return self

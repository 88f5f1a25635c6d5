"""Policy losses, by registry name: adding a loss is one function here, one
name in `AlgoConfig.loss` and one test.

Every loss takes the same typed input and returns per-token losses `loss_bt`;
the caller multiplies by precomputed `token_weights_bt` (which encode the
aggregation over the whole global batch, across ranks and micro-batches) and
sums. That keeps gradient accumulation and data parallelism exact: the sum of
weighted token losses over every micro-batch on every rank is the loss.

Off-policy correction uses the generator's own log-probs (`gen_logprobs_bt`,
recorded by vLLM when the tokens were sampled, possibly several policy
versions ago): for GRPO they are the "old" policy of the clipped ratio
(PipelineRL-style), for CISPO the denominator of the truncated IS weight.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from rl.algo.config import AlgoConfig


@dataclass
class LossInputs:
    logprobs_bt: torch.Tensor  # log pi_train(token), with grad
    gen_logprobs_bt: torch.Tensor  # log pi_gen(token) from the rollout engine
    advantages_b: torch.Tensor  # one advantage per sequence
    mask_bt: torch.Tensor  # 1.0 on response tokens that are trained


LOSSES: dict[str, Callable[[LossInputs, AlgoConfig], torch.Tensor]] = {}


def register_loss(name: str):
    def deco(fn):
        LOSSES[name] = fn
        return fn
    return deco


def _adv_bt(inp: LossInputs) -> torch.Tensor:
    return inp.advantages_b[:, None].expand_as(inp.logprobs_bt)


@register_loss("grpo")
def grpo_loss(inp: LossInputs, cfg: AlgoConfig) -> torch.Tensor:
    """-min(rho*A, clip(rho, 1-eps_lo, 1+eps_hi)*A), rho = pi_train/pi_gen.

    The generator is the behaviour ("old") policy, so the clip already bounds
    the off-policy ratio; `is_cap` is not used here."""
    adv = _adv_bt(inp)
    ratio = torch.exp(inp.logprobs_bt - inp.gen_logprobs_bt)
    clipped = torch.clamp(ratio, 1.0 - cfg.clip_low, 1.0 + cfg.clip_high)
    return -torch.minimum(ratio * adv, clipped * adv) * inp.mask_bt


@register_loss("cispo")
def cispo_loss(inp: LossInputs, cfg: AlgoConfig) -> torch.Tensor:
    """ScaleRL/MiniMax CISPO: -sg(min(rho, eps_max)) * A * log pi_train."""
    rho = torch.exp(inp.logprobs_bt.detach() - inp.gen_logprobs_bt)
    weight = torch.clamp(rho, max=cfg.is_cap)
    return -(weight * _adv_bt(inp) * inp.logprobs_bt) * inp.mask_bt


def policy_loss(name: str, inp: LossInputs, cfg: AlgoConfig, token_weights_bt: torch.Tensor) -> torch.Tensor:
    """Weighted sum of the named loss's per-token values (a scalar)."""
    return (LOSSES[name](inp, cfg) * token_weights_bt).sum()

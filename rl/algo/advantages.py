"""Advantage estimators, by registry name.

Input is rewards grouped by prompt (`rewards_gs`: one row per prompt group,
`s` samples each); output has the same shape. Group-relative baselines need
no critic. The batch-std variant is ScaleRL's: A_i = r_i - mean(group),
then divided by the std of all A in the batch.
"""
from __future__ import annotations

from typing import Callable

import torch

ADVANTAGES: dict[str, Callable[..., torch.Tensor]] = {}


def register_advantage(name: str):
    def deco(fn):
        ADVANTAGES[name] = fn
        return fn
    return deco


@register_advantage("mean_only")
def mean_only(rewards_gs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return rewards_gs - rewards_gs.mean(dim=1, keepdim=True)


@register_advantage("grpo")
def grpo(rewards_gs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    centred = mean_only(rewards_gs)
    return centred / (rewards_gs.std(dim=1, keepdim=True, unbiased=True) + eps)


@register_advantage("batch_std")
def batch_std(rewards_gs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    centred = mean_only(rewards_gs)
    return centred / (centred.std(unbiased=True) + eps) if centred.numel() > 1 else centred


def compute_advantages(name: str, rewards_gs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return ADVANTAGES[name](rewards_gs.to(torch.float64), eps).to(torch.float32)

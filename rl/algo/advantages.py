"""Advantage normalisations, by registry name.

Input is rewards grouped by prompt (`rewards_gs`: one row per prompt group,
`s` samples each); output has the same shape. The baseline is always the
group mean (no critic), A_i = r_i - mean(r of its group); the one switch is
what A is divided by:

    group_std   std of the group's rewards     GRPO, DAPO, GSPO
    batch_std   std of all A in the batch      ScaleRL (methods.md section 2)
    no_std      nothing                        Dr.GRPO, Kimi k1.5 (r - r_bar)

Standard deviations are unbiased (divide by n - 1), as in TRL and verl. A
group whose rewards are all equal has A = 0 under every normalisation (not
0/0), so with the zero-variance filter off it adds tokens but no gradient.
'grpo' and 'mean_only' are the earlier names of 'group_std' and 'no_std'
(recipes and saved run configs still use them).
"""
from __future__ import annotations

from typing import Callable

import torch

ADVANTAGES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {}


def register_advantage(*names: str):
    def deco(fn):
        for name in names:
            ADVANTAGES[name] = fn
        return fn
    return deco


@register_advantage("no_std", "mean_only")
def no_std(rewards_gs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return rewards_gs - rewards_gs.mean(dim=1, keepdim=True)


@register_advantage("group_std", "grpo")
def group_std(rewards_gs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    centred_gs = no_std(rewards_gs)
    if rewards_gs.shape[1] < 2:  # one sample: no spread to divide by, and A = 0 anyway
        return centred_gs
    std_g1 = rewards_gs.std(dim=1, keepdim=True, unbiased=True)
    return torch.where(std_g1 > 0, centred_gs / (std_g1 + eps), torch.zeros_like(centred_gs))


@register_advantage("batch_std")
def batch_std(rewards_gs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    centred_gs = no_std(rewards_gs)
    if centred_gs.numel() < 2:
        return centred_gs
    std = centred_gs.std(unbiased=True)
    return centred_gs / (std + eps) if std > 0 else centred_gs


def compute_advantages(name: str, rewards_gs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return ADVANTAGES[name](rewards_gs.to(torch.float64), eps).to(torch.float32)

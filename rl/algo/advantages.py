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

`mask_gs` (optional, bool, same shape) marks the samples that have a reward:
a masked sample (its reward failed, rewards.types) is left out of its group's
mean and std and of the batch std, and gets A = 0. Its entry in `rewards_gs`
is ignored (any finite placeholder).
"""
from __future__ import annotations

from typing import Callable

import torch

ADVANTAGES: dict[str, Callable[..., torch.Tensor]] = {}


def register_advantage(*names: str):
    def deco(fn):
        for name in names:
            ADVANTAGES[name] = fn
        return fn
    return deco


def _weights(rewards_gs: torch.Tensor, mask_gs: torch.Tensor | None) -> torch.Tensor:
    """1.0 where a sample has a reward, 0.0 where it is masked."""
    return torch.ones_like(rewards_gs) if mask_gs is None else mask_gs.to(rewards_gs.dtype)


def _std(centred: torch.Tensor, m: torch.Tensor, dim=None) -> torch.Tensor:
    """Unbiased std of already centred values over the members m marks."""
    if dim is None:
        n = m.sum()
        return ((centred * m) ** 2).sum().div((n - 1).clamp(min=1)).sqrt()
    n = m.sum(dim=dim, keepdim=True)
    return ((centred * m) ** 2).sum(dim=dim, keepdim=True).div((n - 1).clamp(min=1)).sqrt()


@register_advantage("no_std", "mean_only")
def no_std(rewards_gs: torch.Tensor, eps: float = 1e-6, mask_gs: torch.Tensor | None = None) -> torch.Tensor:
    m = _weights(rewards_gs, mask_gs)
    r = rewards_gs * m
    mean_g1 = r.sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp(min=1)
    return (r - mean_g1) * m


@register_advantage("group_std", "grpo")
def group_std(rewards_gs: torch.Tensor, eps: float = 1e-6, mask_gs: torch.Tensor | None = None) -> torch.Tensor:
    m = _weights(rewards_gs, mask_gs)
    centred_gs = no_std(rewards_gs, eps, mask_gs)
    # fewer than two scored samples: no spread to divide by, and A = 0 anyway
    std_g1 = torch.where(m.sum(dim=1, keepdim=True) >= 2, _std(centred_gs, m, dim=1), torch.zeros_like(m[:, :1]))
    return torch.where(std_g1 > 0, centred_gs / (std_g1 + eps), torch.zeros_like(centred_gs))


@register_advantage("batch_std")
def batch_std(rewards_gs: torch.Tensor, eps: float = 1e-6, mask_gs: torch.Tensor | None = None) -> torch.Tensor:
    m = _weights(rewards_gs, mask_gs)
    centred_gs = no_std(rewards_gs, eps, mask_gs)
    if m.sum() < 2:
        return centred_gs
    mean = (centred_gs * m).sum() / m.sum()  # 0 up to rounding: every group is centred
    std = _std(centred_gs - mean, m)
    return centred_gs / (std + eps) if std > 0 else centred_gs


def compute_advantages(name: str, rewards_gs: torch.Tensor, eps: float = 1e-6,
                       mask_gs: torch.Tensor | None = None) -> torch.Tensor:
    return ADVANTAGES[name](rewards_gs.to(torch.float64), eps, mask_gs).to(torch.float32)

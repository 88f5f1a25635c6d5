"""Policy losses, by registry name: adding a loss is one function here, one
name in `AlgoConfig.loss` and one test.

Every loss takes the same typed input and returns a `TokenLoss`: per-token
losses `loss_bt`, and `clipped_bt`, the tokens whose importance ratio the
loss clipped or truncated (the loss owns what "clipped" means, so the
`train/clip_frac` metric means the same thing as the loss). The caller
multiplies `loss_bt` by precomputed `token_weights_bt` (which encode the
aggregation over the whole global batch, across ranks and micro-batches)
and sums. That keeps gradient accumulation and data parallelism exact: the
sum of weighted token losses over every micro-batch on every rank is the loss.

Off-policy correction uses the generator's own log-probs (`gen_logprobs_bt`,
recorded by vLLM when the tokens were sampled, possibly several policy
versions ago). There is no separate "old policy" forward: the learner takes
one optimizer step per batch, so pi_gen is the behaviour policy of every
ratio, rho_t = pi_train(y_t) / pi_gen(y_t) (PipelineRL-style).

Sequence-level losses (gspo, kimi) compute one value L_i per sequence and
put it on each of its response tokens; every aggregation weights the tokens
of a sequence equally, so the sequence gets L_i times its row's total weight
(1/B under sequence_mean: the papers' 1/G sum_i L_i) in value and gradient.

Truncated importance sampling (`AlgoConfig.tis`, cap C = `is_cap`; Yao et
al. 2025, "Your efficient RL framework secretly brings you off-policy RL
training"; the sg(min(rho, C)) of ScaleRL's loss, methods.md section 2) caps
the importance weight each loss puts on the generator-trainer ratio. It does
not multiply every loss by sg(min(rho, C)): grpo's gradient already carries
rho (d(rho*A)/dtheta = rho*A*dlog pi), so that would weight tokens by
rho*min(rho, C), importance-sampling twice. Per loss:

    grpo/dapo/dr_grpo   x sg(min(rho, C) / rho): the weight becomes min(rho, C);
                        PPO's clip still zeroes what it zeroed
    gspo                x sg(min(s_i, C) / s_i) on the sequence ratio s_i
    cispo               already sg(min(rho, C)): tis changes nothing
    kimi                x sg(min(rho_t, C)): kimi has no importance weight of
                        its own; with the value on every token, a sequence is
                        scaled by the weight-average of its tokens' factors
"""
from __future__ import annotations

import math
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


@dataclass
class TokenLoss:
    loss_bt: torch.Tensor  # per-token loss, 0 off the mask
    clipped_bt: torch.Tensor  # bool: ratio clipped or truncated on this token (False off the mask)


LOSSES: dict[str, Callable[[LossInputs, AlgoConfig], TokenLoss]] = {}


def register_loss(*names: str):
    def deco(fn):
        for name in names:
            LOSSES[name] = fn
        return fn
    return deco


def _adv_bt(inp: LossInputs) -> torch.Tensor:
    return inp.advantages_b[:, None].expand_as(inp.logprobs_bt)


def _log_ratio_bt(inp: LossInputs) -> torch.Tensor:
    """log(pi_train / pi_gen) on response tokens, 0 elsewhere (pads and
    prompt positions hold arbitrary log-probs and must not leak into sums)."""
    return (inp.logprobs_bt - inp.gen_logprobs_bt) * inp.mask_bt


def _ppo_clip(ratio: torch.Tensor, adv: torch.Tensor, cfg: AlgoConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """-min(ratio*A, clip(ratio, 1-eps_lo, 1+eps_hi)*A), and where the clipped
    branch is taken (it has no gradient): ratio above the band with A > 0,
    below it with A < 0. Outside the band on the other side the unclipped
    branch is the minimum and the token keeps its gradient."""
    lo, hi = 1.0 - cfg.clip_low, 1.0 + cfg.clip_high
    loss = -torch.minimum(ratio * adv, torch.clamp(ratio, lo, hi) * adv)
    active = ((adv > 0) & (ratio > hi)) | ((adv < 0) & (ratio < lo))
    return loss, active


def _truncate(log_ratio: torch.Tensor, cfg: AlgoConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """TIS for a loss that already weights by exp(log_ratio): the stop-gradient
    factor min(ratio, C) / ratio that turns that weight into min(ratio, C),
    and where it bites. Identity when tis is off."""
    if not cfg.tis:
        return torch.ones_like(log_ratio), torch.zeros_like(log_ratio, dtype=torch.bool)
    excess = (log_ratio.detach() - math.log(cfg.is_cap)).clamp(min=0)
    return torch.exp(-excess), excess > 0


@register_loss("grpo", "dapo", "dr_grpo")
def ppo_clip_loss(inp: LossInputs, cfg: AlgoConfig) -> TokenLoss:
    """PPO-clip per token (Schulman et al. 2017) with pi_gen as the old policy:
    -min(rho*A, clip(rho, 1-clip_low, 1+clip_high)*A), rho = pi_train/pi_gen.

    GRPO (Shao et al. 2024, arXiv 2402.03300), DAPO (Yu et al. 2025, arXiv
    2503.14476) and Dr.GRPO (Liu et al. 2025, arXiv 2503.20783) share this
    per-token surrogate; they differ in the clip band (DAPO's clip-higher,
    clip_high 0.28), the aggregation (GRPO sequence_mean, DAPO token_mean,
    Dr.GRPO sequence_sum) and the advantage (Dr.GRPO no_std), which are
    their own switches (the table in rl/algo/config.py). None has a KL term
    here. Clipped: the clipped branch taken, or rho > is_cap under tis."""
    log_ratio = _log_ratio_bt(inp)
    ratio = torch.exp(log_ratio)
    loss, active = _ppo_clip(ratio, _adv_bt(inp), cfg)
    factor, truncated = _truncate(log_ratio, cfg)
    keep = inp.mask_bt > 0
    return TokenLoss(loss * factor * inp.mask_bt, (active | truncated) & keep)


@register_loss("gspo")
def gspo_loss(inp: LossInputs, cfg: AlgoConfig) -> TokenLoss:
    """GSPO (Zheng et al. 2025, arXiv 2507.18071): the ratio is per sequence,
    s_i = exp(mean_t log(pi_train(y_it) / pi_gen(y_it))) over the response
    tokens, and L_i = -min(s_i*A_i, clip(s_i, 1-clip_low, 1+clip_high)*A_i),
    clipped per sequence; the paper uses clip_low 3e-4, clip_high 4e-4 and
    sequence_mean (J = 1/G sum_i). The length normalisation inside s_i keeps
    its range the same for short and long answers, and one ratio per sequence
    matches a reward given per sequence. Clipped: every token of a sequence
    whose clipped branch was taken (or s_i > is_cap under tis), so
    `train/clip_frac` is token-weighted."""
    tokens_b1 = inp.mask_bt.sum(dim=1, keepdim=True).clamp(min=1)
    log_s_b1 = _log_ratio_bt(inp).sum(dim=1, keepdim=True) / tokens_b1
    loss_b1, active_b1 = _ppo_clip(torch.exp(log_s_b1), inp.advantages_b[:, None], cfg)
    factor_b1, truncated_b1 = _truncate(log_s_b1, cfg)
    keep = inp.mask_bt > 0
    return TokenLoss(loss_b1 * factor_b1 * inp.mask_bt, (active_b1 | truncated_b1) & keep)


@register_loss("cispo")
def cispo_loss(inp: LossInputs, cfg: AlgoConfig) -> TokenLoss:
    """ScaleRL/MiniMax-M1 CISPO (arXiv 2506.13585; methods.md section 2):
    -sg(min(rho, eps_max)) * A * log pi_train, eps_max = is_cap. REINFORCE
    with truncated importance weights: no token loses its gradient, a token
    with rho > is_cap has its weight capped. Clipped: rho > is_cap."""
    log_ratio = _log_ratio_bt(inp).detach()
    weight = torch.exp(log_ratio).clamp(max=cfg.is_cap)
    keep = inp.mask_bt > 0
    loss = -(weight * _adv_bt(inp) * inp.logprobs_bt) * inp.mask_bt
    return TokenLoss(loss, (log_ratio > math.log(cfg.is_cap)) & keep)


@register_loss("kimi")
def kimi_loss(inp: LossInputs, cfg: AlgoConfig) -> TokenLoss:
    """Kimi k1.5 online mirror descent (arXiv 2501.12599, policy optimization;
    methods.md section 3): the surrogate E[(r - tau*log Z - tau*log(pi/pi_i))^2]
    with tau*log Z approximated by the mean reward of the k samples, so
    r - tau*log Z = A from the 'no_std' advantage, and pi_i, the policy the
    samples came from, is pi_gen. Per sequence, with the sequence log-ratio
    delta_i = sum_t log(pi_train(y_it) / pi_gen(y_it)):

        L_i = (A_i - tau*delta_i)^2 / (2*tau)
        dL_i = -(A_i - tau*delta_i) * dlog pi(y_i) = -A_i dlog pi + tau/2 * d(delta_i^2)

    the paper's gradient exactly. Dividing the paper's square by 2*tau (a
    positive constant: same minimiser) makes the step size comparable with
    the other losses instead of scaling it by 2*tau. The paper averages over
    the k samples: sequence_mean. Clipped: nothing, or rho_t > is_cap under tis."""
    tau = cfg.kimi_tau
    if tau is None:
        raise ValueError("the kimi loss needs algo.kimi_tau")
    delta_b1 = _log_ratio_bt(inp).sum(dim=1, keepdim=True)
    loss_b1 = (inp.advantages_b[:, None] - tau * delta_b1) ** 2 / (2 * tau)
    loss = loss_b1 * inp.mask_bt
    keep = inp.mask_bt > 0
    if not cfg.tis:
        return TokenLoss(loss, torch.zeros_like(keep))
    log_ratio = _log_ratio_bt(inp).detach()
    weight = torch.exp(log_ratio).clamp(max=cfg.is_cap)
    return TokenLoss(loss * weight, (log_ratio > math.log(cfg.is_cap)) & keep)


def policy_loss(name: str, inp: LossInputs, cfg: AlgoConfig, token_weights_bt: torch.Tensor) -> torch.Tensor:
    """Weighted sum of the named loss's per-token values (a scalar)."""
    return (LOSSES[name](inp, cfg).loss_bt * token_weights_bt).sum()


def clipped_mask(name: str, inp: LossInputs, cfg: AlgoConfig) -> torch.Tensor:
    """Bool (B, T): response tokens whose ratio the named loss clipped or
    truncated (see each loss), for the `train/clip_frac` metric."""
    with torch.no_grad():
        return LOSSES[name](inp, cfg).clipped_bt

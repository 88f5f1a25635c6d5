"""The learner's step metrics mean what they say: the mismatch KL against an
exact KL, and the clip fraction as each loss defines clipping."""
import math

import pytest
import torch

from rl.algo.batch import TrainBatch
from rl.algo.config import AlgoConfig
from rl.algo.losses import LossInputs
from rl.learner.rank import _metrics, _step_sums


def _metrics_of(logprobs_bt, gen_logprobs_bt, advantages_b, mask_bt, algo, min_version_b=None):
    b, t = mask_bt.shape
    versions = torch.zeros(b, dtype=torch.long) if min_version_b is None else min_version_b
    sub = TrainBatch(torch.zeros(b, t, dtype=torch.long), mask_bt, gen_logprobs_bt, mask_bt / mask_bt.sum(),
                     advantages_b, versions, torch.full((b,), t))
    inp = LossInputs(logprobs_bt, gen_logprobs_bt, advantages_b, mask_bt)
    sums = _step_sums(inp, sub, torch.tensor(0.0), 0, algo)
    return _metrics(sums, grad_norm=0.0, lr=0.0, version=1, seconds=0.0)


def test_mismatch_kl_is_kl_gen_train_against_exact():
    # tokens sampled from a known p_gen; the trainer's probabilities p_train are known too
    p_gen = [0.5, 0.3, 0.15, 0.05]
    p_train = [0.3, 0.3, 0.2, 0.2]
    # exact KL(p_gen || p_train) = sum p_gen * ln(p_gen / p_train)
    #   0.5 ln(0.5/0.3) = 0.5 * 0.510826 = 0.255413;  0.3 ln 1 = 0
    #   0.15 ln(0.15/0.2) = 0.15 * -0.287682 = -0.043152;  0.05 ln(0.05/0.2) = 0.05 * -1.386294 = -0.069315
    exact = 0.255413 - 0.043152 - 0.069315  # 0.142946
    # the k3 value per category, r - 1 - ln r with r = p_train/p_gen = 0.6, 1, 4/3, 4:
    k3 = [0.6 - 1 + 0.510826, 0.0, 1 / 3 - 0.287682, 4 - 1 - 1.386294]  # 0.110826, 0, 0.045651, 1.613706
    sd = math.sqrt(sum(p * k * k for p, k in zip(p_gen, k3)) - exact ** 2)  # 0.340913
    n = 200_000
    se = sd / math.sqrt(n)  # 0.000762
    g = torch.Generator().manual_seed(0)
    idx = torch.multinomial(torch.tensor(p_gen), n, replacement=True, generator=g).reshape(200, 1000)
    lp_train = torch.tensor(p_train).log()[idx]
    lp_gen = torch.tensor(p_gen).log()[idx]
    m = _metrics_of(lp_train, lp_gen, torch.zeros(200), torch.ones(200, 1000), AlgoConfig())
    assert "mismatch/kl" not in m  # renamed: the name says the direction
    # the estimator is unbiased, so the sample mean is within 4 standard errors (0.003, 2% of the KL);
    # the seed is fixed, and for a random seed a miss would have probability ~6e-5
    assert abs(m["mismatch/kl_gen_train"] - exact) < 4 * se
    # the old estimator (ratio inverted) has mean chi^2(gen||train) - KL = 0.115 here: 36 standard errors off
    r_inv = (lp_gen - lp_train).exp()
    old = (r_inv - 1 - r_inv.log()).mean().item()
    assert abs(old - exact) > 20 * se


# the PPO-family batch of test_algo_losses: ratios [2, 1, 0.5], [2, 0.5, pad], [3, pad, pad], A = +1, -1, 0
P_TRAIN = [[0.5, 0.3, 0.2], [0.5, 0.1, 1.0], [0.6, 1.0, 1.0]]
P_GEN = [[0.25, 0.3, 0.4], [0.25, 0.2, 1.0], [0.2, 1.0, 1.0]]
MASK = torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 0, 0]])


@pytest.mark.parametrize("algo, frac", [
    (AlgoConfig(loss="grpo"), 2 / 6),  # the clipped branch: rho 2 with A > 0, rho 0.5 with A < 0
    (AlgoConfig(loss="dapo", clip_high=2.5), 1 / 6),  # only rho 0.5 with A < 0 (rho 2 is inside 1 + 2.5)
    (AlgoConfig(loss="grpo", tis=True, is_cap=1.5), 4 / 6),  # plus the truncated rho 3 (A = 0) and rho 2 (A < 0)
    (AlgoConfig(loss="cispo", is_cap=1.5), 3 / 6),  # rho > 1.5: 2, 2, 3 (the 0.8-1.2 band would say 5/6)
    # row 0 made rho 2, 2, 2: s = 2 > 1.2 with A > 0, clipped; row 1 s = sqrt(2*0.5) = 1; row 2 A = 0.
    # Token-weighted: the clipped sequence's 3 tokens of 6
    (AlgoConfig(loss="gspo"), 3 / 6),
    (AlgoConfig(loss="kimi", kimi_tau=0.5), 0.0),  # no clipping
])
def test_clip_frac_follows_the_loss(algo, frac):
    lp = torch.tensor(P_TRAIN).log()
    gen = torch.tensor(P_GEN).log() * MASK
    adv = torch.tensor([1.0, -1.0, 0.0])
    if algo.loss == "gspo":  # row 0: 0.5/0.25, 0.6/0.3, 0.8/0.4 = 2, 2, 2
        lp = torch.tensor([[0.5, 0.6, 0.8], P_TRAIN[1], P_TRAIN[2]]).log()
        gen = torch.tensor([[0.25, 0.3, 0.4], P_GEN[1], P_GEN[2]]).log() * MASK
    m = _metrics_of(lp, gen, adv, MASK, algo)
    assert m["train/clip_frac"] == pytest.approx(frac)


def test_other_mismatch_metrics_by_hand():
    lp = torch.tensor(P_TRAIN).log()
    gen = torch.tensor(P_GEN).log() * MASK
    m = _metrics_of(lp, gen, torch.tensor([1.0, -1.0, 0.0]), MASK, AlgoConfig(),
                    min_version_b=torch.tensor([0, 1, 0]))
    assert m["train/tokens"] == 6
    assert m["train/ratio_mean"] == pytest.approx((2 + 1 + 0.5 + 2 + 0.5 + 3) / 6)  # 1.5
    # |log rho|: ln 2 = 0.693147 four times, ln 1 = 0, ln 3 = 1.098612
    assert m["mismatch/abs_logprob"] == pytest.approx((4 * 0.693147 + 1.098612) / 6, rel=1e-6)  # 0.645200
    # on-policy rows (min version 0 = the version trained): rows 0 and 2, tokens ln 2, 0, ln 2, ln 3
    assert m["mismatch/onpolicy_abs_logprob"] == pytest.approx((2 * 0.693147 + 1.098612) / 4, rel=1e-6)

"""Every loss in the registry against values and gradients worked by hand on
small batches with a padded position and a zero-advantage (zero-variance)
row. Probabilities are chosen so the ratios are round numbers; the expected
numbers are written out as arithmetic, not recomputed with the loss formula.

Gradients are d(loss)/d(log pi_train) per token: with token weights w_t,
a token-level loss l_t gives w_t * dl_t/dlog pi_t; a sequence-level loss L
(on every token) gives (sum of the row's weights) * dL/dlog pi_t.
"""
import math

import pytest
import torch

from rl.algo.config import AlgoConfig
from rl.algo.losses import LOSSES, LossInputs, clipped_mask, policy_loss

PAD = 0.9  # trainer probability at pad positions: must never matter


def _batch(p_train, p_gen, adv, width=None):
    """Rows of (p_train, p_gen) per response token, right-padded to `width`
    (default: the longest row); pads get log pi_train = log 0.9 and
    log pi_gen = 0 (as build_train_batch leaves them)."""
    t = width or max(len(r) for r in p_train)
    lp = [[math.log(p) for p in r] + [math.log(PAD)] * (t - len(r)) for r in p_train]
    gen = [[math.log(p) for p in r] + [0.0] * (t - len(r)) for r in p_gen]
    mask = [[1.0] * len(r) + [0.0] * (t - len(r)) for r in p_train]
    logprobs = torch.tensor(lp, requires_grad=True)
    inp = LossInputs(logprobs, torch.tensor(gen), torch.tensor(adv), torch.tensor(mask))
    return logprobs, inp


def _close(got_bt, expected, tol=1e-6):
    torch.testing.assert_close(got_bt, torch.tensor(expected, dtype=got_bt.dtype), atol=tol, rtol=1e-5)


def _run(name, cfg, inp, logprobs, weights):
    loss = policy_loss(name, inp, cfg, weights)
    loss.backward()
    return loss.item(), logprobs.grad, clipped_mask(name, inp, cfg)


# PPO-family batch: ratios rho = p_train / p_gen
#   row 0, A = +1: rho = 0.5/0.25 = 2, 0.3/0.3 = 1, 0.2/0.4 = 0.5
#   row 1, A = -1: rho = 2, 0.1/0.2 = 0.5, pad
#   row 2, A =  0: rho = 0.6/0.2 = 3, pad, pad     (a zero-variance group)
P_TRAIN = [[0.5, 0.3, 0.2], [0.5, 0.1], [0.6]]
P_GEN = [[0.25, 0.3, 0.4], [0.25, 0.2], [0.2]]
ADV = [1.0, -1.0, 0.0]
TOKEN_MEAN = torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 0, 0]]) / 6  # 6 response tokens


def test_grpo_value_gradient_and_clip_mask():
    lp, inp = _batch(P_TRAIN, P_GEN, ADV)
    loss, grad, clipped = _run("grpo", AlgoConfig(loss="grpo", clip_low=0.2, clip_high=0.2), inp, lp, TOKEN_MEAN)
    # row 0 (A=+1): rho 2 -> clipped branch 1.2*A: l = -1.2, no grad
    #               rho 1 -> l = -1, dl = -rho*A = -1;  rho 0.5 -> min(0.5, 0.8) = 0.5: l = -0.5, dl = -0.5
    # row 1 (A=-1): rho 2 -> min(-2, -1.2) = -2 unclipped: l = 2, dl = +2
    #               rho 0.5 -> min(-0.5, -0.8) = -0.8 clipped: l = 0.8, no grad
    # row 2 (A=0): l = 0
    assert loss == pytest.approx((-1.2 - 1 - 0.5 + 2 + 0.8) / 6, abs=1e-6)  # 0.016667
    _close(grad, [[0, -1 / 6, -0.5 / 6], [2 / 6, 0, 0], [0, 0, 0]])
    assert clipped.tolist() == [[True, False, False], [False, True, False], [False, False, False]]


def test_dapo_clip_higher_and_shared_surrogate():
    assert LOSSES["dapo"] is LOSSES["grpo"] is LOSSES["dr_grpo"]  # one surrogate, three recipes
    lp, inp = _batch(P_TRAIN, P_GEN, ADV)
    loss, grad, _ = _run("dapo", AlgoConfig(loss="dapo", clip_low=0.2, clip_high=0.28), inp, lp, TOKEN_MEAN)
    # as grpo, but row 0's rho = 2 is clipped at 1.28: l = -1.28
    assert loss == pytest.approx((-1.28 - 1 - 0.5 + 2 + 0.8) / 6, abs=1e-6)  # 0.003333
    _close(grad, [[0, -1 / 6, -0.5 / 6], [2 / 6, 0, 0], [0, 0, 0]])
    # rho = 0.5/0.4 = 1.25, A = +1: clipped under 0.2 (l = -1.2, no grad), kept under 0.28 (l = -1.25, dl = -1.25)
    for clip_high, value, slope, was_clipped in ((0.2, -1.2, 0.0, True), (0.28, -1.25, -1.25, False)):
        lp, inp = _batch([[0.5]], [[0.4]], [1.0])
        loss, grad, clipped = _run("dapo", AlgoConfig(loss="dapo", clip_high=clip_high), inp, lp, torch.ones(1, 1))
        assert loss == pytest.approx(value, abs=1e-6)
        assert grad.item() == pytest.approx(slope)
        assert clipped.item() is was_clipped


def test_dr_grpo_with_sequence_sum_weights():
    # Dr.GRPO = the same surrogate with aggregation sequence_sum: w = 1 / (B * L) = 1 / (3 * 4)
    weights = torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 0, 0]]) / 12
    lp, inp = _batch(P_TRAIN, P_GEN, ADV)
    loss, grad, _ = _run("dr_grpo", AlgoConfig(loss="dr_grpo", aggregation="sequence_sum", norm_tokens=4,
                                               advantage="no_std"), inp, lp, weights)
    assert loss == pytest.approx((-1.2 - 1 - 0.5 + 2 + 0.8) / 12, abs=1e-6)  # 0.008333
    _close(grad, [[0, -1 / 12, -0.5 / 12], [2 / 12, 0, 0], [0, 0, 0]])


def test_tis_composes_with_grpo():
    cfg = AlgoConfig(loss="grpo", clip_low=0.2, clip_high=0.2, tis=True, is_cap=1.5)
    lp, inp = _batch(P_TRAIN, P_GEN, ADV)
    loss, grad, clipped = _run("grpo", cfg, inp, lp, TOKEN_MEAN)
    # factor sg(min(rho, 1.5) / rho): 1.5/2 = 0.75 where rho = 2 (and rho = 3), 1 elsewhere
    # row 0: -1.2 * 0.75 = -0.9 (no grad), -1, -0.5
    # row 1: rho 2 unclipped: 2 * 0.75 = 1.5 and dl = -A * min(rho, 1.5) = 1.5
    #        (not 2, the untruncated weight; not 2 * 1.5 = 3, a second IS factor); rho 0.5: 0.8, no grad
    assert loss == pytest.approx((-0.9 - 1 - 0.5 + 1.5 + 0.8) / 6, abs=1e-6)  # -0.016667
    _close(grad, [[0, -1 / 6, -0.5 / 6], [1.5 / 6, 0, 0], [0, 0, 0]])
    # clipped (PPO branch) or truncated (rho > 1.5): rho 2, 0.5 | rho 2, 0.5 | rho 3 (A = 0, truncated all the same)
    assert clipped.tolist() == [[True, False, False], [True, True, False], [True, False, False]]
    # the unclipped tokens now get CISPO's gradient, -min(rho, C) * A * w
    lp2, inp2 = _batch(P_TRAIN, P_GEN, ADV)
    _, cispo_grad, _ = _run("cispo", AlgoConfig(loss="cispo", is_cap=1.5), inp2, lp2, TOKEN_MEAN)
    assert grad[1, 0].item() == pytest.approx(cispo_grad[1, 0].item())
    assert grad[0, 1].item() == pytest.approx(cispo_grad[0, 1].item())


@pytest.mark.parametrize("tis", [False, True])
def test_cispo_batch_value_gradient_and_tis_is_a_no_op(tis):
    cfg = AlgoConfig(loss="cispo", is_cap=1.5, tis=tis)
    lp, inp = _batch(P_TRAIN, P_GEN, ADV)
    loss, grad, clipped = _run("cispo", cfg, inp, lp, TOKEN_MEAN)
    # weights min(rho, 1.5): row 0 [1.5, 1, 0.5], row 1 [1.5, 0.5], row 2 [1.5]; l = -w * A * log p
    # row 0: 1.5*0.693147 = 1.039721, 1.203973 (= -ln 0.3), 0.5*1.609438 = 0.804719
    # row 1: -1.039721, 0.5*ln 0.1 = -1.151293;  row 2: 0
    assert loss == pytest.approx((1.039721 + 1.203973 + 0.804719 - 1.039721 - 1.151293) / 6, abs=1e-6)  # 0.142900
    _close(grad, [[-1.5 / 6, -1 / 6, -0.5 / 6], [1.5 / 6, 0.5 / 6, 0], [0, 0, 0]])
    assert clipped.tolist() == [[True, False, False], [True, False, False], [True, False, False]]  # rho > 1.5


# GSPO batch, ratios per token and the sequence ratio s = geometric mean:
#   a, A = +1: 0.605/0.5 = 1.21, 0.3/0.3 = 1      s = sqrt(1.21) = 1.1   (in the band)
#   b, A = -1: 0.8/0.2 = 4, 0.4/0.4 = 1, pad     s = sqrt(4) = 2        (A < 0: unclipped branch)
#   c, A = +1: 4, 1                              s = 2                  (A > 0: clipped at 1.2)
#   d, A =  0: 0.1/0.4 = 0.25, 4                 s = 1
GSPO_TRAIN = [[0.605, 0.3], [0.8, 0.4], [0.8, 0.4], [0.1, 0.8]]
GSPO_GEN = [[0.5, 0.3], [0.2, 0.4], [0.2, 0.4], [0.4, 0.2]]
GSPO_ADV = [1.0, -1.0, 1.0, 0.0]
SEQUENCE_MEAN = torch.full((4, 2), 1 / 8)  # 4 sequences of 2 tokens: 1/(4*2)


def test_gspo_value_gradient_and_sequence_clip():
    lp, inp = _batch(GSPO_TRAIN, GSPO_GEN, GSPO_ADV, width=3)  # a padded column
    weights = torch.cat([SEQUENCE_MEAN, torch.zeros(4, 1)], dim=1)
    loss, grad, clipped = _run("gspo", AlgoConfig(loss="gspo", clip_low=0.2, clip_high=0.2), inp, lp, weights)
    # L: a = -1.1, b = -min(-2, -1.2) = 2, c = -1.2 (clipped), d = 0; each row weighs 2/8 = 1/4
    assert loss == pytest.approx((-1.1 + 2 - 1.2 + 0) / 4, abs=1e-6)  # -0.075
    # dL/dlog pi_t = -A * s / |y| (unclipped): a -1.1/2 = -0.55, b 2/2 = 1; then times the row weight 1/4
    _close(grad, [[-0.1375, -0.1375, 0], [0.25, 0.25, 0], [0, 0, 0], [0, 0, 0]])
    assert clipped.tolist() == [[False, False, False], [False, False, False], [True, True, False],
                                [False, False, False]]
    # tis with cap 1.5: s = 2 -> factor 0.75 on rows b and c
    lp, inp = _batch(GSPO_TRAIN, GSPO_GEN, GSPO_ADV, width=3)
    loss, grad, clipped = _run("gspo", AlgoConfig(loss="gspo", tis=True, is_cap=1.5), inp, lp, weights)
    assert loss == pytest.approx((-1.1 + 2 * 0.75 - 1.2 * 0.75 + 0) / 4, abs=1e-6)  # -0.125
    assert grad[1].tolist() == pytest.approx([0.75 / 4, 0.75 / 4, 0])  # 0.1875
    assert clipped.sum().item() == 4  # rows b (truncated) and c (clipped and truncated)


# Kimi batch, tau = 0.5, delta = sum_t log rho_t over the sequence:
#   a, A = +1: rho 0.5/0.25 = 2, 0.3/0.3 = 1        delta = ln 2
#   b, A = -1: rho 0.2/0.4 = 0.5, 1, pad            delta = -ln 2
#   c, A =  0: rho 1, 1                             delta = 0
#   d, A =  0: rho 2, 1                             delta = ln 2  (zero advantage, still pulled back)
KIMI_TRAIN = [[0.5, 0.3], [0.2, 0.3], [0.3, 0.3], [0.5, 0.3]]
KIMI_GEN = [[0.25, 0.3], [0.4, 0.3], [0.3, 0.3], [0.25, 0.3]]
KIMI_ADV = [1.0, -1.0, 0.0, 0.0]


def _kimi_inputs():
    lp, inp = _batch(KIMI_TRAIN, KIMI_GEN, KIMI_ADV, width=3)  # a padded column
    return lp, inp, torch.cat([SEQUENCE_MEAN, torch.zeros(4, 1)], dim=1)


def test_kimi_value_and_gradient():
    lp, inp, weights = _kimi_inputs()
    loss, grad, clipped = _run("kimi", AlgoConfig(loss="kimi", kimi_tau=0.5, advantage="no_std"), inp, lp, weights)
    # tau*ln 2 = 0.346574
    # a: A - tau*delta = 1 - 0.346574 = 0.653426,   L = 0.653426^2 / (2*0.5) = 0.426966, dL = -0.653426
    # b: -1 + 0.346574 = -0.653426,                 L = 0.426966,                       dL = +0.653426
    # c: 0,                                         L = 0,                              dL = 0
    # d: 0 - 0.346574,                              L = 0.120113,                       dL = +0.346574
    assert loss == pytest.approx((0.426966 + 0.426966 + 0 + 0.120113) / 4, abs=1e-6)  # 0.243511
    _close(grad, [[-0.163357, -0.163357, 0], [0.163357, 0.163357, 0],
                                           [0, 0, 0], [0.086643, 0.086643, 0]])
    assert not clipped.any()


def test_kimi_with_tis():
    lp, inp, weights = _kimi_inputs()
    cfg = AlgoConfig(loss="kimi", kimi_tau=0.5, tis=True, is_cap=1.5)
    loss, grad, clipped = _run("kimi", cfg, inp, lp, weights)
    # token factors min(rho, 1.5): a [1.5, 1], b [0.5, 1], c [1, 1], d [1.5, 1]; row scale (f0 + f1) / 8
    # a: 2.5/8 * 0.426966 = 0.133427, b: 1.5/8 * 0.426966 = 0.080056, d: 2.5/8 * 0.120113 = 0.037535
    assert loss == pytest.approx(0.133427 + 0.080056 + 0 + 0.037535, abs=1e-6)  # 0.251018
    # grads: a 2.5/8 * -0.653426 = -0.204196, b 1.5/8 * 0.653426 = 0.122517, d 2.5/8 * 0.346574 = 0.108304
    assert grad[:, 0].tolist() == pytest.approx([-0.204196, 0.122517, 0, 0.108304], abs=1e-6)
    assert clipped.tolist() == [[True, False, False], [False, False, False], [False, False, False],
                                [True, False, False]]


def test_config_requires_what_a_switch_reads():
    with pytest.raises(ValueError, match="kimi_tau"):
        AlgoConfig(loss="kimi")
    with pytest.raises(ValueError, match="norm_tokens"):
        AlgoConfig(aggregation="sequence_sum")

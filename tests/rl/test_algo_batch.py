"""Aggregations and advantage normalisations, through the real batch builder:
token weights, loss value and gradient on a hand-worked batch with padding
and a zero-variance group (kept: the filter is off).

The batch: group 0 (prompt of 2 tokens, rewards 1 and 0, answers of 3 and
1 tokens), group 1 (prompt of 1 token, rewards 1 and 1, answers of 2 and 4
tokens). 10 response tokens; rows are right-padded to 5 positions.
The loss is CISPO with pi_train = pi_gen (ratio 1, weight 1), so a token's
loss is -A * log p = 0.5 * A (the generator's log p is -0.5 on every token)
and its gradient is -A * w: the weights and advantages are all there is.
"""
import pytest
import torch

from rl.algo.advantages import ADVANTAGES, compute_advantages
from rl.algo.batch import build_train_batch
from rl.algo.config import AlgoConfig
from rl.algo.losses import LossInputs, policy_loss
from rollout.types import Group, Sample

MASK = [[0, 0, 1, 1, 1],  # group 0, 3 answer tokens after a 2-token prompt
        [0, 0, 1, 0, 0],  # group 0, 1 answer token, 2 pads
        [0, 1, 1, 0, 0],  # group 1, 2 answer tokens, 2 pads
        [0, 1, 1, 1, 1]]  # group 1, 4 answer tokens


def _group(prompt_len, rewards, lengths):
    samples = [Sample(token_ids=[7] * n, logprobs=[-0.5] * n, versions=[0] * n, finish_reason="stop", reward=r)
               for r, n in zip(rewards, lengths)]
    return Group(prompt={"prompt": "x"}, prompt_ids=[5] * prompt_len, samples=samples)


def _build(**cfg):
    groups = [_group(2, [1.0, 0.0], [3, 1]), _group(1, [1.0, 1.0], [2, 4])]
    return build_train_batch(groups, AlgoConfig(zero_variance_filter=False, **cfg), pad_id=0)


def _loss_and_grad(batch):
    lp = batch.gen_logprobs_bt.clone().requires_grad_()
    inp = LossInputs(lp, batch.gen_logprobs_bt, batch.advantages_b, batch.mask_bt)
    loss = policy_loss("cispo", inp, AlgoConfig(loss="cispo"), batch.token_weights_bt)
    loss.backward()
    return loss.item(), lp.grad


def _spread(per_row):
    """A (4, 5) tensor holding per_row[i] on row i's answer tokens."""
    return torch.tensor(MASK, dtype=torch.float32) * torch.tensor(per_row, dtype=torch.float32)[:, None]


@pytest.mark.parametrize("aggregation, norm_tokens, row_weights, value", [
    # 1 / 10 answer tokens
    ("token_mean", None, [1 / 10] * 4, 3 * 0.1 * 0.25 - 0.1 * 0.25),  # 0.05
    # 1 / (4 sequences * |y|): 1/(4*3), 1/(4*1), 1/(4*2), 1/(4*4); the +/- sequences of group 0 cancel
    ("sequence_mean", None, [1 / 12, 1 / 4, 1 / 8, 1 / 16], 3 / 12 * 0.25 - 1 / 4 * 0.25),  # 0
    # 1 / (2 groups * group tokens): group 0 has 3+1 = 4 tokens, group 1 has 2+4 = 6
    ("prompt_mean", None, [1 / 8, 1 / 8, 1 / 12, 1 / 12], 3 / 8 * 0.25 - 1 / 8 * 0.25),  # 0.0625
    # 1 / (4 sequences * L = 5), sums to 10/20 = 0.5
    ("sequence_sum", 5, [1 / 20] * 4, 3 / 20 * 0.25 - 1 / 20 * 0.25),  # 0.025
])
def test_aggregation_weights_value_and_gradient(aggregation, norm_tokens, row_weights, value):
    b = _build(aggregation=aggregation, norm_tokens=norm_tokens, advantage="no_std")
    assert b.mask_bt.tolist() == MASK
    assert b.advantages_b.tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])
    torch.testing.assert_close(b.token_weights_bt, _spread(row_weights))
    loss, grad = _loss_and_grad(b)
    assert loss == pytest.approx(value, abs=1e-7)
    # gradient -A * w: A = +0.5, -0.5 on group 0; the zero-variance group and the pads get exactly 0
    torch.testing.assert_close(grad, _spread([-0.5 * row_weights[0], 0.5 * row_weights[1], 0.0, 0.0]))


@pytest.mark.parametrize("advantage, a", [
    ("no_std", 0.5),  # r - mean: 1 - 0.5
    ("mean_only", 0.5),  # the old name of no_std
    ("group_std", 0.5 / 0.707107),  # std of (1, 0) with n-1: sqrt((0.25 + 0.25) / 1) = 0.707107 -> 0.707107
    ("grpo", 0.5 / 0.707107),  # the old name of group_std
    # centred rewards (0.5, -0.5, 0, 0), std with n-1: sqrt(0.5 / 3) = 0.408248 -> 1.224745
    ("batch_std", 0.5 / 0.408248),
])
def test_advantage_normalisation_value_and_gradient(advantage, a):
    b = _build(aggregation="token_mean", advantage=advantage)
    assert b.advantages_b.tolist() == pytest.approx([a, -a, 0.0, 0.0], rel=1e-5)  # zero-variance group: 0, not nan
    loss, grad = _loss_and_grad(b)
    assert loss == pytest.approx(0.5 * 0.1 * (3 * a - a), rel=1e-5)  # 0.5*A*w over 3 tokens of +a, 1 of -a
    torch.testing.assert_close(grad, _spread([-a * 0.1, a * 0.1, 0.0, 0.0]), rtol=1e-5, atol=1e-7)


def test_zero_variance_and_single_sample_groups_give_zero_not_nan():
    flat = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    for name in ADVANTAGES:
        assert compute_advantages(name, flat, eps=0.0).tolist() == [[0.0] * 3, [0.0] * 3]
        assert compute_advantages(name, torch.tensor([[1.0], [0.0]]), eps=0.0).tolist() == [[0.0], [0.0]]


def test_masked_tokens_stay_as_input_but_carry_no_weight():
    """Sample 0 was continued (partial rollouts): 2 tokens from an earlier
    iteration (version 0, mask False), then 2 new ones (version 1). Sample 1
    has a forced interruption token (logprob 0.0, mask False) between two
    sampled ones. 4 trained tokens in all, so token_mean gives each 1/4 (with
    every response token trained it would be 1/7), and the masked ones keep
    their ids as context but get weight and gradient 0."""
    continued = Sample(token_ids=[7, 8, 9, 10], logprobs=[-0.5] * 4, versions=[0, 0, 1, 1],
                       finish_reason="stop", reward=1.0, loss_mask=[False, False, True, True])
    forced = Sample(token_ids=[11, 12, 13], logprobs=[-0.5, 0.0, -0.5], versions=[1, 1, 1],
                    finish_reason="stop", reward=0.0, loss_mask=[True, False, True], interrupted=True)
    group = Group(prompt={"prompt": "x"}, prompt_ids=[5, 5], samples=[continued, forced])
    b = build_train_batch([group], AlgoConfig(zero_variance_filter=False, aggregation="token_mean",
                                              advantage="no_std"), pad_id=0)
    assert b.input_ids_bt.tolist() == [[5, 5, 7, 8, 9, 10], [5, 5, 11, 12, 13, 0]]
    mask = [[0, 0, 0, 0, 1, 1], [0, 0, 1, 0, 1, 0]]
    assert b.mask_bt.tolist() == mask
    torch.testing.assert_close(b.token_weights_bt, torch.tensor(mask, dtype=torch.float32) / 4)
    assert b.min_version_b.tolist() == [1, 1]  # the old segment's version 0 does not train
    assert b.lengths_b.tolist() == [6, 5]
    _, grad = _loss_and_grad(b)  # -A * w on trained tokens: A = +0.5, -0.5
    want = torch.tensor(mask, dtype=torch.float32) * torch.tensor([[-0.5 / 4], [0.5 / 4]])
    torch.testing.assert_close(grad, want)
    # sequence_mean divides by each row's trained tokens: 1 / (2 rows * 2)
    seq = build_train_batch([group], AlgoConfig(zero_variance_filter=False, aggregation="sequence_mean"), pad_id=0)
    torch.testing.assert_close(seq.token_weights_bt, torch.tensor(mask, dtype=torch.float32) / 4)

"""Losses, advantages and batch shaping against hand-computed values."""
import math
import typing

import pytest
import torch

from rl.algo.advantages import ADVANTAGES, compute_advantages
from rl.algo.batch import build_train_batch, plan_microbatches
from rl.algo.config import AdvantageName, AlgoConfig, LossName
from rl.algo.losses import LOSSES, LossInputs, policy_loss
from rollout.types import Group, Sample


def test_registries_match_config_names():
    assert set(LOSSES) == set(typing.get_args(LossName))
    assert set(ADVANTAGES) == set(typing.get_args(AdvantageName))
    # the earlier advantage names stay as aliases (recipes and saved run configs use them)
    assert ADVANTAGES["grpo"] is ADVANTAGES["group_std"] and ADVANTAGES["mean_only"] is ADVANTAGES["no_std"]


def _inputs(p_train, p_gen, adv):
    lp = torch.tensor([[math.log(p_train)]], requires_grad=True)
    return lp, LossInputs(
        logprobs_bt=lp,
        gen_logprobs_bt=torch.tensor([[math.log(p_gen)]]),
        advantages_b=torch.tensor([adv]),
        mask_bt=torch.ones(1, 1),
    )


def test_cispo_value_and_gradient():
    cfg = AlgoConfig(loss="cispo", is_cap=4.0)
    lp, inp = _inputs(0.5, 0.25, 1.0)  # rho = 2, below the cap
    loss = policy_loss("cispo", inp, cfg, torch.ones(1, 1))
    assert loss.item() == pytest.approx(-2.0 * math.log(0.5))  # 1.3863
    loss.backward()
    assert lp.grad.item() == pytest.approx(-2.0)  # d/dlogp of -sg(rho)*A*logp
    cfg = AlgoConfig(loss="cispo", is_cap=1.5)  # rho = 2 truncated to 1.5
    lp, inp = _inputs(0.5, 0.25, -1.0)
    loss = policy_loss("cispo", inp, cfg, torch.ones(1, 1))
    assert loss.item() == pytest.approx(1.5 * math.log(0.5))
    loss.backward()
    assert lp.grad.item() == pytest.approx(1.5)


def test_grpo_clipped_ratio():
    cfg = AlgoConfig(loss="grpo", clip_low=0.2, clip_high=0.2)
    lp, inp = _inputs(0.5, 0.25, 1.0)  # ratio 2 > 1.2: clipped, no gradient
    loss = policy_loss("grpo", inp, cfg, torch.ones(1, 1))
    assert loss.item() == pytest.approx(-1.2)
    loss.backward()
    assert lp.grad.item() == pytest.approx(0.0)
    lp, inp = _inputs(0.5, 0.25, -1.0)  # negative advantage: unclipped branch
    loss = policy_loss("grpo", inp, cfg, torch.ones(1, 1))
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    assert lp.grad.item() == pytest.approx(2.0)  # -A * ratio
    lp, inp = _inputs(0.3, 0.3, 0.5)  # on-policy: ratio 1, grad = -A
    loss = policy_loss("grpo", inp, cfg, torch.full((1, 1), 0.5))
    assert loss.item() == pytest.approx(-0.25)
    loss.backward()
    assert lp.grad.item() == pytest.approx(-0.25)


def test_advantages_hand_computed():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    no_std = compute_advantages("no_std", r)
    assert no_std.reshape(-1).tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75])
    group = compute_advantages("group_std", r, eps=0.0)
    assert group[0, 0].item() == pytest.approx(0.5 / math.sqrt(1 / 3), rel=1e-5)  # std = 0.5774
    assert group[1, 3].item() == pytest.approx(-0.75 / 0.5, rel=1e-5)  # std([1,1,1,0]) = 0.5
    centred = [0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75]
    mu = sum(centred) / 8
    sd = math.sqrt(sum((c - mu) ** 2 for c in centred) / 7)
    batch = compute_advantages("batch_std", r, eps=0.0)
    assert batch.reshape(-1).tolist() == pytest.approx([c / sd for c in centred], rel=1e-5)


def _group(prompt_len, rewards, lengths):
    samples = [Sample(token_ids=[7] * n, logprobs=[-0.5] * n, versions=[3] * n, finish_reason="stop", reward=r)
               for r, n in zip(rewards, lengths)]
    return Group(prompt={"prompt": "x"}, prompt_ids=[5] * prompt_len, samples=samples)


def test_batch_filter_and_token_weights():
    groups = [_group(2, [1, 0], [3, 1]), _group(3, [1, 1], [2, 2]), _group(1, [0, 1], [4, 2])]
    b = build_train_batch(groups, AlgoConfig(aggregation="token_mean"), pad_id=0)
    assert b.size == 4  # the all-correct group is dropped
    assert b.mask_bt.sum().item() == 10
    assert b.token_weights_bt.sum().item() == pytest.approx(1.0)
    assert b.token_weights_bt[0, 2].item() == pytest.approx(1 / 10)
    assert b.lengths_b.tolist() == [5, 3, 5, 3]
    assert b.input_ids_bt[1].tolist() == [5, 5, 7, 0, 0]
    p = build_train_batch(groups, AlgoConfig(aggregation="prompt_mean"), pad_id=0)
    # group 0 has 4 response tokens, group 2 has 6; each group carries weight 1/2
    assert p.token_weights_bt[0].sum().item() == pytest.approx(0.5 * 3 / 4)
    assert p.token_weights_bt[2].sum().item() == pytest.approx(0.5 * 4 / 6)
    s = build_train_batch(groups, AlgoConfig(aggregation="sequence_mean"), pad_id=0)
    assert s.token_weights_bt.sum(dim=1).tolist() == pytest.approx([0.25] * 4)
    assert build_train_batch([groups[1]], AlgoConfig(), pad_id=0) is None


def test_microbatch_plan_balances_and_equalises():
    lengths = [40, 38, 35, 30, 12, 10, 9]
    plan = plan_microbatches(lengths, world=2, token_budget=80)
    assert len(plan[0]) == len(plan[1])  # same number of passes on each rank
    rows = sorted(i for rank in plan for m in rank for i in m)
    assert rows == list(range(7))
    for rank in plan:
        for m in rank:
            if m:
                assert len(m) * max(lengths[i] for i in m) <= 80
    loads = [sum(lengths[i] for m in rank for i in m) for rank in plan]
    assert abs(loads[0] - loads[1]) <= 40
    single = plan_microbatches(lengths, world=1, token_budget=10_000)
    assert single == [[sorted(range(7), key=lambda i: -lengths[i])]]

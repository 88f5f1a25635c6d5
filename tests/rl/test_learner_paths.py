"""The learner's memory paths compute what the earlier path computes.

Activation checkpointing, the chunked log-prob head and packed micro-batches
(rl/learner/{head,packing,scoring}.py) against the earlier path (padded
rows, full logits, every activation kept): token log-probs, the loss and
every parameter's gradient, on 2 FSDP2 ranks over gloo, at temperature 0.7,
for GRPO, GSPO, Kimi and CISPO with the prompt-mean aggregation, on a batch
of several prompt and response lengths split into several micro-batches;
and under bfloat16 with the FP32 head. One learner group per precision; the
switches are flipped inside its ranks between passes (no optimizer step is
taken, so every pass sees the same weights).

Tolerances: sums in another order (the chunked head's logsumexp and its
weight gradient summed over chunks, a packed row's matmul shapes) differ by
float rounding. Measured over 5 batch seeds for every loss and switch set,
the largest relative difference was, float32: log-probs 1.8e-7, loss
3.9e-6, gradients 1.3e-6 (bound 2e-5); bfloat16 with the FP32 head:
log-probs 1.8e-7, loss 1.9e-7 (bound 2e-5), gradients 2.6e-3, the
rounding of bfloat16 itself (unit roundoff 3.9e-3; bound 1e-2).
"""
from __future__ import annotations

import random

import pytest
import torch

from rl.algo.batch import build_train_batch, padded_fraction, plan_microbatches
from rl.algo.config import AlgoConfig
from rl.learner.config import LearnerConfig
from rl.learner.group import LearnerGroup
from rollout.types import Group, Sample

TEMPERATURE = 0.7
ALGOS = {
    "grpo": AlgoConfig(loss="grpo", aggregation="sequence_mean"),
    "gspo": AlgoConfig(loss="gspo", aggregation="sequence_mean", clip_low=3e-4, clip_high=4e-4),
    "kimi": AlgoConfig(loss="kimi", advantage="no_std", aggregation="sequence_mean", kimi_tau=0.1),
    "cispo_prompt_mean": AlgoConfig(loss="cispo", aggregation="prompt_mean"),
}
EARLIER = dict(packing=False, chunked=False, ckpt=False)


def _groups(seed: int = 0, n_groups: int = 5, n: int = 4) -> list[Group]:
    rng = random.Random(seed)
    out = []
    for _ in range(n_groups):
        prompt = [3] + [rng.randrange(8, 40) for _ in range(rng.randrange(3, 14))] + [4]
        samples = []
        for j in range(n):
            k = rng.randrange(2, 30)
            samples.append(Sample(token_ids=[rng.randrange(8, 40) for _ in range(k)],
                                  logprobs=[-rng.uniform(2.5, 4.5) for _ in range(k)],
                                  versions=[0] * k, finish_reason="stop", reward=float(j % 2)))
        out.append(Group(prompt={}, prompt_ids=prompt, samples=samples))
    return out


def _pass(rank, batch, packing: bool, chunked: bool, ckpt: bool):
    """On one rank: the switches set, one forward/backward of `batch`; returns
    (rank 0's log-probs of the whole batch, the loss, every full gradient)."""
    if not hasattr(rank, "_chunked_head"):
        rank._chunked_head = rank.scorer.head
    rank.cfg = rank.cfg.model_copy(update={"packing": packing})
    rank.scorer.packing = packing
    rank.scorer.head = rank._chunked_head if chunked else None
    if rank._chunked_head is not None:
        rank._chunked_head.chunk_tokens = 7  # several chunks per micro-batch, a ragged last one
    if ckpt:
        rank.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        rank.model.gradient_checkpointing_disable()
    rank.model.train()
    rank.optim.zero_grad(set_to_none=True)
    total = torch.zeros(1, dtype=torch.float64)
    for _, _, loss in rank._micro_losses(batch, rank._plan(batch)):
        (loss * rank.dims.world).backward()
        total += loss.detach().double()
    loss = float(rank._all_reduce(total))
    grads = {n: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).clone()
             for n, p in rank.model.named_parameters()}
    rank.optim.zero_grad(set_to_none=True)
    with torch.no_grad():
        lp = rank.scorer(batch.input_ids_bt, batch.lengths_b) * (batch.mask_bt > 0)
    return lp, loss, grads


def _run(group: LearnerGroup, batch, **switches):
    return group.wait([a.__ray_call__.remote(_pass, batch, switches["packing"], switches["chunked"],
                                             switches["ckpt"]) for a in group.actors])[0]


def _assert_same(ref, got, rel: float, grad_rel: float | None = None) -> None:
    lp0, loss0, g0 = ref
    lp1, loss1, g1 = got
    assert (lp1 - lp0).abs().max() <= rel * lp0.abs().max()
    assert loss1 == pytest.approx(loss0, rel=rel, abs=rel * 1e-3)
    assert set(g0) == set(g1)
    for name in g0:
        scale = float(g0[name].abs().max())
        assert float((g1[name] - g0[name]).abs().max()) <= (grad_rel or rel) * max(scale, 1e-6), name


@pytest.fixture(scope="module")
def fp32_group(ray_local, tiny_random_model):
    cfg = LearnerConfig(ranks=2, cpus_per_rank=0.5, micro_batch_tokens=120, packing=True)
    group = LearnerGroup(cfg, ALGOS["grpo"], tiny_random_model, TEMPERATURE, seed=0)
    yield group
    group.shutdown()


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_each_path_matches_the_earlier_one(fp32_group, algo):
    group = fp32_group
    batch = build_train_batch(_groups(seed=len(algo)), ALGOS[algo], pad_id=0)
    group.wait([a.__ray_call__.remote(lambda r, c: setattr(r, "algo", c), ALGOS[algo]) for a in group.actors])
    plan = plan_microbatches(batch.lengths_b.tolist(), 2, 120, packed=True)
    assert max(len(m) for m in plan[0]) > 1 and len(plan[0]) > 1  # packed rows, several micro-batches
    ref = _run(group, batch, **EARLIER)
    for switches in (dict(EARLIER, ckpt=True), dict(EARLIER, chunked=True), dict(EARLIER, packing=True),
                     dict(packing=True, chunked=True, ckpt=True)):
        _assert_same(ref, _run(group, batch, **switches), rel=2e-5)
    assert any(float(g.abs().max()) > 0 for g in ref[2].values())


def test_fp32_head_under_bfloat16(ray_local, tiny_random_model):
    """bfloat16 body, float32 head: the chunked head upcasts as the full one does."""
    cfg = LearnerConfig(ranks=1, cpus_per_rank=0.5, micro_batch_tokens=120, dtype="bfloat16")
    group = LearnerGroup(cfg, ALGOS["grpo"], tiny_random_model, TEMPERATURE, seed=0, fp32_lm_head=True)
    try:
        batch = build_train_batch(_groups(seed=3), ALGOS["grpo"], pad_id=0)
        ref = _run(group, batch, packing=False, chunked=False, ckpt=False)
        _assert_same(ref, _run(group, batch, packing=False, chunked=True, ckpt=True), rel=2e-5, grad_rel=1e-2)
    finally:
        group.shutdown()


def test_offload_reaches_fsdp2_and_trains_the_same(ray_local, tiny_random_model):
    """`learner.offload` is FSDP2's CPUOffloadPolicy on every sharded module;
    on CPU it changes nothing: two steps give the same losses and weights."""
    results = []
    for offload in (False, True):
        cfg = LearnerConfig(ranks=2, cpus_per_rank=0.5, lr=1e-3, warmup_steps=0, offload=offload)
        group = LearnerGroup(cfg, ALGOS["grpo"], tiny_random_model, 1.0, seed=0)
        try:
            flags = group.wait([a.__ray_call__.remote(
                lambda r: {p.offload_to_cpu for m in r.model.modules() if hasattr(m, "_get_fsdp_state")
                           for p in m._get_fsdp_state()._fsdp_param_group.fsdp_params})
                for a in group.actors])
            assert flags == [{offload}, {offload}]
            batch = build_train_batch(_groups(seed=5), ALGOS["grpo"], pad_id=0)
            steps = [group.train_step(batch)["train/loss"] for _ in range(2)]
            results.append((steps, group.eval_loss(batch)))
        finally:
            group.shutdown()
    assert results[0] == results[1]
    assert results[0][1] != pytest.approx(results[0][0][0])  # the steps moved the weights


def test_packed_plan_fits_the_budget_and_has_no_padding():
    lengths = [10, 6, 3]
    padded = plan_microbatches(lengths, 1, 20)
    packed = plan_microbatches(lengths, 1, 20, packed=True)
    assert padded == [[[0, 1], [2]]] and packed == [[[0, 1, 2]]]
    assert padded_fraction(padded, lengths, packed=False) == pytest.approx(4 / 23)  # 20 + 3 slots, 19 real
    assert padded_fraction(packed, lengths, packed=True) == 0.0
    rng = random.Random(0)
    lengths = [rng.randrange(1, 90) for _ in range(200)]
    plan = plan_microbatches(lengths, 3, 128, packed=True)
    assert sorted(i for micros in plan for rows in micros for i in rows) == list(range(200))
    assert len({len(m) for m in plan}) == 1  # the same number of passes on every rank
    for micros in plan:
        for rows in micros:
            assert sum(lengths[i] for i in rows) <= 128 or len(rows) == 1

"""FSDP2 learner over gloo: 2 ranks compute exactly what 1 rank computes."""
import random

import pytest

from rl.algo.batch import build_train_batch
from rl.algo.config import AlgoConfig
from rl.learner.config import LearnerConfig
from rl.learner.group import LearnerGroup
from rollout.types import Group, Sample


def _batch(seed=0, groups=6, n=4):
    rng = random.Random(seed)
    out = []
    for _ in range(groups):
        prompt = [3] + [rng.randrange(8, 40) for _ in range(rng.randrange(4, 9))] + [4]
        samples = []
        for j in range(n):
            k = rng.randrange(3, 12)
            samples.append(Sample(token_ids=[rng.randrange(8, 40) for _ in range(k)],
                                  logprobs=[-rng.uniform(2.5, 4.5) for _ in range(k)],
                                  versions=[0] * k, finish_reason="stop", reward=float(j % 2)))
        out.append(Group(prompt={}, prompt_ids=prompt, samples=samples))
    return build_train_batch(out, AlgoConfig(loss="cispo", aggregation="prompt_mean"), pad_id=0)


def _run(ranks, model_dir, budget):
    cfg = LearnerConfig(ranks=ranks, cpus_per_rank=0.5, lr=1e-3, warmup_steps=0, micro_batch_tokens=budget)
    group = LearnerGroup(cfg, AlgoConfig(loss="cispo"), model_dir, temperature=1.0, seed=0)
    try:
        batch = _batch()
        before = group.eval_loss(batch)
        metrics = group.train_step(batch)
        after = group.eval_loss(batch)
        return before, metrics, after
    finally:
        group.shutdown()


def test_two_ranks_match_one_rank(ray_local, tiny_random_model):
    b1, m1, a1 = _run(1, tiny_random_model, budget=10_000)
    b2, m2, a2 = _run(2, tiny_random_model, budget=60)  # also exercises accumulation
    assert b1 == pytest.approx(b2, rel=1e-5, abs=1e-6)
    assert m1["train/loss"] == pytest.approx(m2["train/loss"], rel=1e-5, abs=1e-6)
    assert m1["train/loss"] == pytest.approx(b1, rel=1e-5, abs=1e-6)
    assert m1["train/grad_norm"] == pytest.approx(m2["train/grad_norm"], rel=1e-4)
    assert m1["train/tokens"] == m2["train/tokens"]
    # the update is the same: the loss after one step agrees too
    assert a1 == pytest.approx(a2, rel=1e-4, abs=1e-5)
    assert abs(a1 - b1) > 1e-3  # the step really changed the weights

"""What one training step or evaluation logs about its data and samples
(pure functions of the rollout batch; the controller adds timings, the
learner its own `train/*` and `mismatch/*`)."""
from __future__ import annotations

from rl.algo.batch import informative
from rollout.types import RolloutBatch


def data_metrics(rollout: RolloutBatch, batch, sampler) -> dict:
    """The data frontier: which prompts reached this training step (their
    uids), how many the batch filter dropped, how many were drawn so far."""
    uids = [g.prompt.get("uid") for g in rollout.groups]
    n = len(rollout.groups[0].samples) if rollout.groups else 1
    trained = 0 if batch is None else int(batch.advantages_b.numel()) // max(1, n)
    out = {"data/prompt_uids": uids, "data/prompts_trained": trained,
           "data/prompts_filtered": len(uids) - trained, "data/prompts_drawn": sampler.drawn}
    pool = getattr(sampler, "metrics", None)
    return out | (pool() if pool is not None else {})


def rollout_metrics(batch: RolloutBatch, step: int, k: int) -> dict:
    samples = batch.samples
    if not samples:
        return {}
    rewards = [s.reward for s in samples]
    lengths = [len(s.token_ids) for s in samples]
    correct = [bool(s.correct) for s in samples]
    # staleness of what trains: a carried partial sample's older segments are masked out
    stale = [step - s.trainable_min_version for s in samples if s.trainable_min_version >= 0]
    kept = sum(1 for g in batch.groups if informative(g))
    return {
        "rollout/reward_mean": sum(rewards) / len(rewards),
        "rollout/pass_rate": sum(correct) / len(correct),
        "rollout/length_mean": sum(lengths) / len(lengths),
        "rollout/length_max": max(lengths),
        "rollout/truncation_rate": sum(s.finish_reason == "length" for s in samples) / len(samples),
        "rollout/interrupted_rate": sum(s.interrupted for s in samples) / len(samples),
        "rollout/groups_kept": kept / max(1, len(batch.groups)),
        "rollout/samples": len(samples),
        "pipeline/staleness_max": max(stale, default=0),
        "pipeline/staleness_mean": sum(stale) / max(1, len(stale)),
        "pipeline/max_off_policy_steps": k,
        "time/generate": batch.gen_seconds,
    }


def eval_metrics(batch: RolloutBatch) -> dict:
    samples = batch.samples
    correct = [bool(s.correct) for s in samples]
    per_prompt = [any(bool(s.correct) for s in g.samples) for g in batch.groups]
    return {
        "eval/pass_rate": sum(correct) / max(1, len(correct)),
        "eval/pass_at_k": sum(per_prompt) / max(1, len(per_prompt)),
        "eval/length_mean": sum(len(s.token_ids) for s in samples) / max(1, len(samples)),
        "eval/truncation_rate": sum(s.finish_reason == "length" for s in samples) / max(1, len(samples)),
        "eval/prompts": len(batch.groups),
    }


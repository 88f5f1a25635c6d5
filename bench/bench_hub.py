"""Reward hub throughput on math items, as ratios against two baselines
measured in the same invocation, one process each:

- like for like: the hub's own math reward (`rewards.math`, its fast path
  for plain integers, math-verify for the rest) called directly, item by
  item, no Ray, no batching; the ratio is what the hub's processes and
  batching buy or cost for the same work;
- math-verify alone on every item (parse the whole response, verify), the
  usual way to score math; the hub's fast path is part of its ratio.

Items look like the training spine's: `<think>a+b...</think>\\boxed{N}` with
an integer reference, plus 1 in 5 that need the full parser (a LaTeX fraction
against a decimal). Every item is unique, so the hub's cache never hits.

    python bench/bench_hub.py [--items 2000]
"""
from __future__ import annotations

import argparse
import logging
import time


def make_items(n: int, salt: int) -> list[dict]:
    items = []
    for k in range(n):
        v = salt * 1_000_000 + k
        if k % 5 == 4:
            items.append({"kind": "math", "response": f"<think>half of {2 * v + 1}</think> \\boxed{{\\frac{{{2 * v + 1}}}{{2}}}}",
                          "answer": f"{v}.5"})
        else:
            right = k % 3 != 0
            items.append({"kind": "math", "response": f"<think>{v - 7}+7...</think>\\boxed{{{v if right else v + 1}}}",
                          "answer": str(v)})
    return items


def direct(items: list[dict]) -> tuple[float, list[float]]:
    from math_verify import parse, verify

    logging.disable(logging.WARNING)
    t = time.perf_counter()
    scores = []
    for s in items:
        gold = parse("$" + s["answer"] + "$")
        pred = parse(s["response"])
        scores.append(1.0 if gold and pred and verify(gold, pred) else 0.0)
    return len(items) / (time.perf_counter() - t), scores


def direct_same_scorer(items: list[dict]) -> tuple[float, list[float]]:
    """The hub's math reward, in this process: the same work a replica does."""
    from rewards.config import RewardsConfig
    from rewards.math import make_math_reward

    logging.disable(logging.WARNING)
    reward = make_math_reward(RewardsConfig())
    t = time.perf_counter()
    scores = [reward(s).score for s in items]
    return len(items) / (time.perf_counter() - t), scores


def hub_rate(replicas: int, items: list[dict]) -> tuple[float, list[float]]:
    from rewards.config import RewardsConfig
    from rewards.hub import start_hub

    hub = start_hub(RewardsConfig(replicas=replicas, replica_cpus=0, max_batch=128))
    try:
        hub.score(make_items(64, salt=99))  # warm the path
        t = time.perf_counter()
        groups = [items[i:i + 16] for i in range(0, len(items), 16)]  # prompts x 16 samples
        results = hub.score_groups(groups)
        rate = len(items) / (time.perf_counter() - t)
        return rate, [r.score for g in results for r in g]
    finally:
        hub.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2000)
    args = ap.parse_args()
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    base_rate, base_scores = direct(make_items(args.items, salt=1))
    same_rate, same_scores = direct_same_scorer(make_items(args.items, salt=1))
    agree0 = sum(a == b for a, b in zip(same_scores, base_scores)) / len(base_scores)
    print(f"baseline: math-verify directly, one process: {base_rate:9.1f} items/s")
    print(f"baseline: the hub's scorer directly, one process (like for like): {same_rate:9.1f} items/s"
          f"  (scores agree with math-verify on {agree0:.0%})")
    for n in (1, 2):
        rate, scores = hub_rate(n, make_items(args.items, salt=1 + n))
        agree = sum(a == b for a, b in zip(scores, base_scores)) / len(scores)
        print(f"hub, {n} replica{'s' if n > 1 else ' '}: {rate:9.1f} items/s  ratio {rate / same_rate:5.2f}x like for "
              f"like, {rate / base_rate:5.2f}x math-verify alone  (scores agree with math-verify on {agree:.0%})")
    ray.shutdown()


if __name__ == "__main__":
    main()

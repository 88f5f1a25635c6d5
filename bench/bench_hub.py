"""Reward hub throughput on math items, as ratios against calling
math-verify directly in one process (parse the whole response, verify).

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
    print(f"baseline: math-verify directly, one process: {base_rate:9.1f} items/s")
    for n in (1, 2):
        rate, scores = hub_rate(n, make_items(args.items, salt=1 + n))
        agree = sum(a == b for a, b in zip(scores, base_scores)) / len(scores)
        print(f"hub, {n} replica{'s' if n > 1 else ' '}:                        {rate:9.1f} items/s"
              f"  ratio {rate / base_rate:5.2f}x  (scores agree with baseline on {agree:.0%})")
    ray.shutdown()


if __name__ == "__main__":
    main()

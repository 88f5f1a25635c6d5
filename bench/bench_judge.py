"""Judge throughput of the reward hub with one and with two judge engines.

Baseline (measured in the same run): the hub with one judge engine. The
other side: the same hub config with two engines. Both score the same
requests: `--groups` groups of `--group-size` arithmetic responses (right,
near-miss, fooling), sent at once as one `score_groups_async` per group so
every hub replica has work in flight and the engines batch continuously.
Printed: samples/s of each, the ratio 2-engine / 1-engine, and the judge
usage the ledger would read (tokens, core-seconds, judgements).

Each engine gets `--cpus` Ray CPUs; on a 2-core machine two engines share
the same cores, so the ratio measures contention, not scaling: run it where
each engine has its own cores (or GPU) for the real number.

    python bench/bench_judge.py --kind genrm --groups 16
    python bench/bench_judge.py --kind grm --groups 8 --k 2
"""
from __future__ import annotations

import argparse
import random
import time


def _workload(n_groups: int, size: int, seed: int = 0) -> list[list[dict]]:
    rng = random.Random(seed)
    groups = []
    for _ in range(n_groups):
        a, b = rng.randrange(10, 99), rng.randrange(10, 99)
        q = f"{a}+{b}="
        pool = [f"<think>{a}+{b}={a + b}</think>\\boxed{{{a + b}}}",
                f"<think>{a}+{b}={a + b + 1}</think>\\boxed{{{a + b + 1}}}",
                "Let me solve this step by step.", ":"]
        groups.append([{"kind": "math", "prompt": q, "answer": str(a + b), "response": rng.choice(pool)}
                       for _ in range(size)])
    return groups


def _run(args, replicas: int) -> tuple[float, dict]:
    import ray

    from rewards.config import RewardsConfig
    from rewards.hub import start_hub
    from rewards.judge.pool import default_judge_model
    from rl.base.judge_build import judge_path

    judge = dict(model=args.model, replicas=replicas, cpus_per_replica=args.cpus, max_model_len=512,
                 timeout_s=600.0, grm=dict(k=args.k, max_tokens=args.max_tokens))
    cfg = RewardsConfig(replicas=2, replica_cpus=0.25, terms={"math": 1.0, args.kind: 1.0}, judge=judge)
    hub = start_hub(cfg, judge_model=default_judge_model(cfg, judge_path))
    try:
        hub.score_groups(_workload(2, args.group_size, seed=99))  # warm-up
        before = hub.judge_usage()
        groups = _workload(args.groups, args.group_size)
        t0 = time.perf_counter()
        results = ray.get([hub.score_groups_async([g]) for g in groups])
        wall = time.perf_counter() - t0
        after = hub.judge_usage()
        failed = sum(1 for part in results for g in part for r in g if r.details.get("error"))
        n = sum(len(g) for g in groups)
        delta = {k: after[k] - before[k] for k in ("judge_prompt_tokens", "judge_generated_tokens", "judgements",
                                                   "judge_core_seconds")}
        delta["failed_samples"] = failed
        return n / wall, delta
    finally:
        hub.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=["genrm", "grm"], default="genrm")
    ap.add_argument("--groups", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--k", type=int, default=2, help="GRM judgements per set")
    ap.add_argument("--max-tokens", type=int, default=160, help="GRM judgement token limit")
    ap.add_argument("--cpus", type=float, default=1.0, help="Ray CPUs per judge engine")
    ap.add_argument("--model", default=None, help="judge folder (default: the project's tiny judge)")
    args = ap.parse_args()

    import ray

    ray.init(num_cpus=max(4, int(2 * args.cpus) + 2), include_dashboard=False, log_to_driver=False)
    try:
        one, u1 = _run(args, 1)
        two, u2 = _run(args, 2)
    finally:
        ray.shutdown()
    print(f"kind={args.kind} samples={args.groups * args.group_size} (groups of {args.group_size}), "
          f"cpus/engine={args.cpus:g}" + (f", k={args.k}" if args.kind == "grm" else ""))
    print(f"1 judge engine : {one:8.2f} samples/s   usage {u1}")
    print(f"2 judge engines: {two:8.2f} samples/s   usage {u2}")
    print(f"ratio 2/1 engines: {two / one:.2f}x")


if __name__ == "__main__":
    main()

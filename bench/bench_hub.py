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

`--kind code` times assert-style code tests instead, per test, in one
process (no Ray), on samples of 1 and of 5 tests (`assert f(i) == i*i`),
interleaved repetitions, medians. Ours (rewards.code: a program process and
a verdict process per sample, rewards.code_tests) against two baselines run
in the same invocation: the exit-status rule (test appended to the program,
one sandbox per test, exit 0 passes: the cheapest and the most gameable) and
the previous in-process harness (a secret guarded by an audit hook, one
sandbox per test), read from this repository's git history.

    python bench/bench_hub.py [--items 2000]
    python bench/bench_hub.py --kind code [--samples 20] [--reps 5]
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path


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


def code_samples(n: int, tests: int) -> list[dict]:
    return [{"kind": "code", "response": f"```python\ndef f(x):\n    return x * x  # {k}\n```",
             "tests": [f"assert f({i}) == {i * i}" for i in range(tests)]} for k in range(n)]


def previous_harness():
    """(harness text, rewrite function) of the in-process harness this
    repository used before the verdict process, from its git history; None
    without history."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def show(path: str) -> str:
        rev = subprocess.run(["git", "rev-list", "-1", "HEAD", "--", path], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        return subprocess.run(["git", "show", f"{rev}^:{path}"], cwd=root, capture_output=True, text=True,
                              check=True).stdout

    try:
        harness, rewrite_src = show("rewards/assert_harness.py"), show("rewards/assert_rewrite.py")
    except (subprocess.CalledProcessError, OSError):
        return None
    space: dict = {}
    exec(compile(rewrite_src, "assert_rewrite.py", "exec"), space)
    return harness, space["rewrite_test"]


def code_bench(n_samples: int, reps: int) -> None:
    import json
    import secrets
    import statistics

    from rewards.code import last_python_block, score_code
    from rewards.config import RewardsConfig
    from rewards.sandbox import run_python

    cfg = RewardsConfig(timeout_s=120, sandbox=dict(wall_s=30, cpu_s=10))
    previous = previous_harness()

    def exit_status(sample):
        program = last_python_block(sample["response"])
        return [run_python(program + "\n\n" + t, limits=cfg.sandbox).ok for t in sample["tests"]]

    def in_process(sample):
        harness, rewrite = previous
        out = []
        for t in sample["tests"]:
            nonce = secrets.token_hex(16)
            payload = json.dumps({"nonce": nonce, "code": last_python_block(sample["response"]), "test": rewrite(t)})
            run = run_python(harness, payload, limits=cfg.sandbox)
            out.append(run.ok and run.stdout.rstrip("\n").rsplit("\n", 1)[-1] == nonce)
        return out

    def ours(sample):
        return [score_code(sample, cfg).details["passed"] == len(sample["tests"])]

    methods = {"exit status, one sandbox per test": exit_status, "ours: program + verdict process per sample": ours}
    if previous is not None:
        methods["previous in-process harness, one sandbox per test"] = in_process
    print(f"{n_samples} samples per size, {reps} interleaved repetitions; sandbox {cfg.sandbox.model_dump()}")
    print("| tests per sample | method | ms per test (median) | ratio to ours |")
    print("|---|---|---|---|")
    for tests in (1, 5):
        samples = code_samples(n_samples, tests)
        times: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(reps):
            for name, fn in methods.items():
                t = time.perf_counter()
                ok = [all(fn(s)) for s in samples]
                times[name].append((time.perf_counter() - t) * 1000 / (n_samples * tests))
                assert all(ok), f"{name} failed an honest program"
        mine = statistics.median(times["ours: program + verdict process per sample"])
        for name in methods:
            ms = statistics.median(times[name])
            print(f"| {tests} | {name} | {ms:.1f} | {ms / mine:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("math", "code"), default="math")
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=20, help="code: samples per size")
    ap.add_argument("--reps", type=int, default=5, help="code: interleaved repetitions")
    args = ap.parse_args()
    if args.kind == "code":
        code_bench(args.samples, args.reps)
        return
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

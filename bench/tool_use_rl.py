"""RL learns to use a tool: `recipes/tiny-calc.yaml` (the tiny-calc base in the
calculator environment, rewarded only by the boxed sum's correctness), one
run per seed, summarised from what each run wrote.

Per run, from its evals.jsonl (200 held-out sums of 3-6 digit operands, k
samples each): the held-out pass rate and the tool-call rate on long sums
(a sum whose longer operand has `--long-digits` digits or more; a sample
counts when it called the calculator at least once), each at step 0 and at
the last evaluation, with the standard error over prompts (the spread of
per-prompt rates / sqrt(prompts)); "rises" when last - first > 2 SE of the
first. The sigmoid fit per run comes from `asymptote compare` (A, B, the
interval). Plot: both rates over steps per seed, and the training steps'
`env/tool_call_rate`.

    python bench/tool_use_rl.py [--seeds 0 1] [--root runs/tool-use] [--plot docs/img/tool_use.png] [KEY=VALUE ...]

A finished run is only summarised (launch --resume).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_zoo import ROOT, compare, run  # noqa: E402

from rl.data.arith import validation_prompts  # noqa: E402
from rl.metrics_log import read_rows  # noqa: E402
from rl.recipe import load_recipe  # noqa: E402

RECIPE = "tiny-calc"


def mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, sd / math.sqrt(n)


def long_prompts(n: int, digits: tuple[int, int], long_digits: int) -> list[bool]:
    """Which of the first `n` held-out prompts is a long sum."""
    rows = validation_prompts(n, *digits)
    return [max(len(x) for x in r["prompt"].rstrip("=").split("+")) >= long_digits for r in rows]


def rates(ev: dict, long: list[bool]) -> dict:
    """Pass rate (all prompts) and tool-call rate (long sums) of one evaluation, each (mean, SE)."""
    k = ev["k"]
    calls = [c / k for c, is_long in zip(ev["tool_calls"], long) if is_long]
    passed = [c / s for c, s in zip(ev["correct_scored"], ev["scored"])]
    return {"pass": mean_se(passed), "tool_long": mean_se(calls)}


def summarise(run_dir: Path, long_digits: int) -> dict:
    evals = read_rows(run_dir, "evals.jsonl")
    recipe = load_recipe(run_dir / "config.yaml")  # what the run ran
    long = long_prompts(len(evals[0]["tool_calls"]), (recipe.data.digits_min, recipe.data.digits_max), long_digits)
    first, last = rates(evals[0], long), rates(evals[-1], long)
    out = {"steps": (evals[0]["step"], evals[-1]["step"]), "long_prompts": sum(long),
           "curve": [(e["step"], rates(e, long)) for e in evals]}
    for key in ("pass", "tool_long"):
        (m0, se0), (m1, se1) = first[key], last[key]
        out[key] = {"first": m0, "first_se": se0, "last": m1, "last_se": se1,
                    "rise_in_se": (m1 - m0) / se0 if se0 > 0 else math.inf}
    out["train_tool_rate"] = [(r["step"], r["env/tool_call_rate"]) for r in read_rows(run_dir)
                              if "env/tool_call_rate" in r]
    return out


def plot(summaries: dict[int, dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for seed, s in summaries.items():
        steps = [st for st, _ in s["curve"]]
        a.plot(steps, [r["pass"][0] for _, r in s["curve"]], marker="o", label=f"pass rate, seed {seed}")
        a.plot(steps, [r["tool_long"][0] for _, r in s["curve"]], marker="s", ls="--",
               label=f"tool calls on long sums, seed {seed}")
        b.plot(*zip(*s["train_tool_rate"]), lw=1, label=f"seed {seed}")
    a.set(xlabel="learner step", ylabel="held-out rate", title="held-out evaluations (200 sums)", ylim=(0, 1))
    b.set(xlabel="learner step", ylabel="env/tool_call_rate", title="training rollouts", ylim=(0, 1))
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--root", type=Path, default=ROOT / "runs" / "tool-use")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "tool_use.png")
    ap.add_argument("--long-digits", type=int, default=5)
    args, overrides = ap.parse_known_args()
    dirs = {seed: run(RECIPE, seed, args.root, overrides) for seed in args.seeds}
    fits = {f["source"]: f for f in compare(list(dirs.values()), args.root / "compare.png")["runs"]}
    summaries = {seed: summarise(d, args.long_digits) for seed, d in dirs.items()}
    print(f"| seed | steps | held-out pass rate (SE) | rise / SE | tool calls on long sums (SE), "
          f"{summaries[args.seeds[0]]['long_prompts']} prompts | rise / SE | A [interval] | B |")
    print("|---|---|---|---|---|---|---|---|")
    for seed, s in summaries.items():
        f = fits[str(dirs[seed] / "metrics.jsonl")]
        p, t = s["pass"], s["tool_long"]
        print(f"| {seed} | {s['steps'][0]} → {s['steps'][1]} | {p['first']:.3f} ({p['first_se']:.3f}) → "
              f"{p['last']:.3f} ({p['last_se']:.3f}) | {p['rise_in_se']:.1f} | {t['first']:.3f} "
              f"({t['first_se']:.3f}) → {t['last']:.3f} ({t['last_se']:.3f}) | {t['rise_in_se']:.1f} | "
              f"{f['A']:.3f} [{f['A_interval'][0]:.3f}, {f['A_interval'][1]:.3f}] | {f['B']:.2f} |")
    ok = all(s[key]["rise_in_se"] > 2 for s in summaries.values() for key in ("pass", "tool_long"))
    print(f"both rates rise by more than 2 SE of their step-0 values in every run: {'yes' if ok else 'NO'}")
    plot(summaries, args.plot)
    print(f"plot: {args.plot}")
    print(json.dumps({seed: {k: v for k, v in s.items() if k not in ("curve", "train_tool_rate")}
                      for seed, s in summaries.items()}, indent=1))


if __name__ == "__main__":
    main()

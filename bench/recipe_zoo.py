"""Run recipes of the algorithm zoo over several seeds on the tiny task, fit
them with `asymptote compare`, and write the table of docs/results.md.

Baseline: the `grpo` recipe, run in the same invocation with the same seeds,
task, steps and evaluation set; every other recipe is reported against it at
equal compute (the largest compute all runs reached).

    python bench/recipe_zoo.py [--recipes scalerl grpo dapo gspo] [--seeds 0 1]
                               [--root runs/zoo] [--doc docs/results.md] [KEY=VALUE ...]

A finished run is not run again (`launch --resume` only prints its summary),
so an interrupted invocation continues where it stopped. Overrides after the
options apply to every run (e.g. run.steps=100).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- zoo table begin -->", "<!-- zoo table end -->"


def run(recipe: str, seed: int, root: Path, overrides: list[str]) -> Path:
    run_dir = root / f"{recipe}-s{seed}"
    cmd = [sys.executable, "-m", "rl.cli", "launch", str(ROOT / "recipes" / f"{recipe}.yaml"), "--resume",
           "--run-dir", str(run_dir), f"run.seed={seed}", f"data.seed={seed}", "run.progress=false",
           "run.wandb_mode=disabled", *overrides]
    print(f"[zoo] {recipe} seed {seed} -> {run_dir}", flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    print(f"[zoo] {recipe} seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    return run_dir


def compare(run_dirs: list[Path], plot: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "rl.cli", "compare", *map(str, run_dirs), "--json",
                          "--plot", str(plot)], check=True, cwd=ROOT, capture_output=True, text=True)
    return json.loads(out.stdout)


def final_pass_rate(run_dir: Path) -> float:
    return json.loads((run_dir / "summary.json").read_text())["pass_rate_end"]


def _iv(v: list[float]) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]"


def table(recipes: list[str], seeds: list[int], runs: dict, fits: dict, baseline: str) -> str:
    by_name = {r["source"]: r for r in fits["runs"]}
    lines = [f"Equal compute: {fits['equal_compute']:.4g} {fits['x'].split('/')[-1]} (the largest all runs "
             f"reached); intervals are {fits['interval']:.0%}.", "",
             "| recipe | seed | final pass rate | A | B | pass rate at equal compute (fit) |",
             "|---|---|---|---|---|---|"]
    summary = {}
    for recipe in recipes:
        a_vals, eq_vals = [], []
        for seed in seeds:
            d = runs[(recipe, seed)]
            f = by_name[str(d / "metrics.jsonl")]
            a_vals.append(f["A"])
            eq_vals.append(f["at_equal_compute"])
            lines.append(f"| {recipe} | {seed} | {final_pass_rate(d):.3f} | {f['A']:.3f} {_iv(f['A_interval'])} "
                         f"| {f['B']:.2f} {_iv(f['B_interval'])} | {f['at_equal_compute']:.3f} |")
        summary[recipe] = (statistics.mean(a_vals), max(a_vals) - min(a_vals),
                           statistics.mean(eq_vals), max(eq_vals) - min(eq_vals))
    # the joint fit of each recipe's seeds (shared A and B, per-seed C_mid and R0) from `compare`
    joint = {}
    for g in fits.get("groups", []):
        names = {r.rsplit("-s", 1)[0] for r in g["runs"]}
        if len(names) == 1:
            joint[names.pop()] = g
    lines += ["", "| recipe | mean A | A seed range | joint A (seeds together) | joint B | mean pass rate at equal "
              f"compute | its seed range | A vs {baseline} | beyond the seed spread? | joint A intervals apart? |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    base_a, base_range = summary[baseline][0], summary[baseline][1]
    base_iv = joint.get(baseline, {}).get("A_interval")
    for recipe, (a, a_range, eq, eq_range) in summary.items():
        diff = a - base_a
        spread = max(a_range, base_range)
        verdict = "-" if recipe == baseline else ("yes" if abs(diff) > spread else "no")
        g = joint.get(recipe)
        ja = f"{g['A']:.3f} {_iv(g['A_interval'])}" if g else "-"
        jb = f"{g['B']:.2f} {_iv(g['B_interval'])}" if g else "-"
        apart = "-"
        if g and base_iv and recipe != baseline:
            lo, hi = g["A_interval"]
            apart = "yes" if hi < base_iv[0] or lo > base_iv[1] else "no"
        lines.append(f"| {recipe} | {a:.3f} | {a_range:.3f} | {ja} | {jb} | {eq:.3f} | {eq_range:.3f} | {diff:+.3f} "
                     f"| {verdict} | {apart} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=["scalerl", "grpo", "dapo", "gspo"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--root", type=Path, default=ROOT / "runs" / "zoo")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "results.md")
    ap.add_argument("--baseline", default="grpo")
    args, overrides = ap.parse_known_args()
    if args.baseline not in args.recipes:
        ap.error(f"--baseline {args.baseline} is not among --recipes")
    runs = {(r, s): run(r, s, args.root, overrides) for s in args.seeds for r in args.recipes}
    fits = compare(list(runs.values()), args.root / "compare.png")
    text = table(args.recipes, args.seeds, runs, fits, args.baseline)
    print(text)
    doc = args.doc.read_text() if args.doc.is_file() else f"# Results\n\n{BEGIN}\n{END}\n"
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}"
        args.doc.write_text(doc)
        print(f"[zoo] table written to {args.doc}")


if __name__ == "__main__":
    main()

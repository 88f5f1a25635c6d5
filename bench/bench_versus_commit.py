"""This tree against an earlier commit of it: the same timed run from both.

Each side runs `bench/bench_e2e.py --skip-trl --json` (the default recipe
through Controller, bench_e2e's `load_default_recipe`: evaluation cut to 1
prompt x 1 sample at step 0 and the last step, no checkpoints, no monitor,
no wandb) in a fresh process, from its own source tree: --ref is exported
with `git archive` into a temporary folder and put first on PYTHONPATH (the
Ray workers a run starts inherit it), which each run checks by importing
`rl` and `rollout` from the folder it names. The sides alternate, ref first,
--repeats times; the baseline is the ref. Printed: each run's steady-state
samples/s and generated tokens/s, their medians, and the median of the
per-pair ratios this/ref (> 1: this tree is faster), with both sides'
settings (the same recipe, steps, warmup and `--set` overrides).

    .venv/bin/python bench/bench_versus_commit.py --ref 4f2da26 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def export_tree(ref: str, into: Path) -> str:
    """The commit `ref` as plain files under `into`; its full hash."""
    full = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT, capture_output=True,
                          text=True)
    if full.returncode != 0:
        raise SystemExit(f"error: --ref {ref!r} is not a commit of this repository")
    archive = subprocess.run(["git", "archive", full.stdout.strip()], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return full.stdout.strip()


def _env(tree: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree), "TOKENIZERS_PARALLELISM": "false"}


def check_imports(tree: Path) -> None:
    """A run from `tree` imports `rl` and `rollout` from there, not from the installed project."""
    where = subprocess.run([sys.executable, "-c", "import rl, rollout; print(rl.__file__); print(rollout.__file__)"],
                           cwd=tree, env=_env(tree), capture_output=True, text=True, check=True).stdout.split()
    if not all(Path(p).resolve().is_relative_to(tree.resolve()) for p in where):
        raise SystemExit(f"error: the run from {tree} would import {where}")


def run_side(tree: Path, steps: int, warmup: int, sets: list[str]) -> dict:
    """One bench_e2e run of ours from `tree`: its `results['ours']`."""
    cmd = [sys.executable, str(tree / "bench" / "bench_e2e.py"), "--skip-trl", "--json", "--steps", str(steps),
           "--warmup", str(warmup), *[x for s in sets for x in ("--set", s)]]
    proc = subprocess.run(cmd, cwd=tree, env=_env(tree), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: bench_e2e from {tree} failed:\n{proc.stderr[-2000:]}")
    out = proc.stdout
    return json.loads(out[out.rindex('{\n  "model"'):])["results"]["ours"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="the baseline commit (any git revision)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side, alternated")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    ap.add_argument("--warmup", type=int, default=3, help="first steps left out of the steady-state rates")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a recipe override for both sides (repeatable)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-versus-") as tmp:
        ref_tree = Path(tmp)
        full = export_tree(args.ref, ref_tree)
        for tree in (ref_tree, ROOT):
            check_imports(tree)
        runs: dict[str, list[dict]] = {"ref": [], "this": []}
        for i in range(args.repeats):
            for side, tree in (("ref", ref_tree), ("this", ROOT)):
                r = run_side(tree, args.steps, args.warmup, args.sets)
                r["load_before"] = os.getloadavg()[0]
                runs[side].append(r)
                print(f"bench_versus_commit: run {i + 1} {side}: {r['samples_per_s']:.2f} samples/s, "
                      f"{r['gen_tokens_per_s']:.1f} gen tok/s", file=sys.stderr, flush=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    print(f"baseline (ref): {full[:12]}; this: {head.strip()}{' + uncommitted changes' if dirty else ''}")
    print(f"both: recipes/tiny-arith.yaml via bench_e2e --skip-trl, {args.steps} steps, warmup {args.warmup}, "
          f"overrides {args.sets or 'none'}, {os.cpu_count()} CPUs, sides alternated ref first")
    for key, name in (("samples_per_s", "samples/s"), ("gen_tokens_per_s", "generated tok/s")):
        ref, this = [r[key] for r in runs["ref"]], [r[key] for r in runs["this"]]
        ratios = [t / r for t, r in zip(this, ref)]
        print(f"{name:16s} ref {' '.join(f'{x:.2f}' for x in ref)} (median {statistics.median(ref):.2f}); "
              f"this {' '.join(f'{x:.2f}' for x in this)} (median {statistics.median(this):.2f}); "
              f"this/ref per pair {' '.join(f'{x:.3f}' for x in ratios)}, median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()

"""`asymptote launch RECIPE [key=value ...] [--run-dir DIR] [--address ADDR] [--dry-run]`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("launch", help="run a recipe on Ray (an embedded local cluster by default)")
    p.add_argument("recipe", help="recipe YAML file, e.g. recipes/tiny-arith.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. algo.loss=grpo run.steps=50")
    p.add_argument("--run-dir", help="where metrics, config, checkpoints and plots go (default runs/<run.name>); an existing run there is resumed")
    p.add_argument("--address", help="Ray address to join instead of starting a local cluster")
    p.add_argument("--dry-run", action="store_true", help="print the resolved recipe and the resource plan, then exit")
    p.set_defaults(func=launch)


def launch(args: argparse.Namespace) -> int:
    from rl.placement import plan_resources
    from rl.recipe import load_recipe, to_yaml

    recipe = load_recipe(args.recipe, args.overrides)
    if args.address:
        recipe.cluster.address = args.address
    run_dir = Path(args.run_dir or Path("runs") / recipe.run.name)
    if args.dry_run:
        print(to_yaml(recipe), end="")
        print(f"# run dir: {run_dir}")
        print("\n".join("# " + line for line in plan_resources(recipe).describe().splitlines()))
        return 0
    from rl.controller import Controller

    summary = Controller(recipe, run_dir).run()
    start, end = summary.get("pass_rate_start"), summary.get("pass_rate_end")
    line = f"done: {summary['steps']} steps, held-out pass rate {start:.3f} -> {end:.3f}" if start is not None else "done"
    if "fit/A" in summary:
        line += f", fitted asymptote A = {summary['fit/A']:.3f} [{summary.get('fit/A_lo', float('nan')):.3f}, {summary.get('fit/A_hi', float('nan')):.3f}]"
    print(line + f"; run dir {run_dir}", file=sys.stderr)
    return 0

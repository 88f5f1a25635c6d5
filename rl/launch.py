"""`asymptote launch RECIPE ...` and `asymptote resume RUN_DIR ...`.

A run directory holds one run. `launch` into a directory that holds an
unfinished run refuses (one line saying to use `resume` or another
directory); `launch --resume` continues it when there is one and starts it
otherwise (what `make run` uses, so the quick start stays idempotent); a
finished run of the same recipe just prints its summary.

`resume RUN_DIR [key=value ...]` continues from the newest valid checkpoint
with the recipe saved in RUN_DIR/config.yaml plus the overrides. Overrides
that cannot corrupt the run are allowed (more steps, eval cadence, checkpoint
cadence, the fit's settings, logging, where Ray runs, how many rollout
workers and hub replicas); anything that changes what was being learned or
the shape of the saved state (model, data, algorithm, optimizer, sampling,
seed, learner world size) is refused with the key named. A different learner
world size is refused rather than resharded: DCP could reshard the model and
optimizer, but each rank's RNG state and the micro-batch split would not
carry over, and "resumed" would no longer mean "the same run". Each config
field says whether a resume may change it (core.config_marks); the keys are
`rl.recipe.RESUMABLE`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

def register(subparsers) -> None:
    p = subparsers.add_parser("launch", help="run a recipe on Ray (an embedded local cluster by default)")
    p.add_argument("recipe", help="recipe YAML file, e.g. recipes/tiny-arith.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. algo.loss=grpo run.steps=50")
    p.add_argument("--run-dir", help="where metrics, config, checkpoints and plots go (default runs/<run.name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir if there is one, else start it")
    p.add_argument("--address", help="Ray address to join instead of starting a local cluster")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved recipe, the per-node plan (against --address's nodes, or "
                        "--nodes N --gpus-per-node G) and the memory plan, then exit; a plan that cannot "
                        "fit is refused")
    p.add_argument("--nodes", type=int, help="--dry-run: plan on N identical nodes")
    p.add_argument("--gpus-per-node", type=float, default=8, help="--dry-run --nodes: GPUs per node (default 8)")
    p.add_argument("--cpus-per-node", type=float, help="--dry-run --nodes: CPUs per node (default: not checked)")
    p.add_argument("--gpu-memory-gb", type=float, metavar="GIB",
                   help="--dry-run: memory of one GPU in GiB to check the memory plan against (80 for an "
                        "H100, 141 for an H200; default cluster.gpu_memory_gb)")
    p.add_argument("--model-config", metavar="PATH",
                   help="--dry-run: the config.json (or a folder with one) the memory plan reads "
                        "(default model.base's, else recipes/gpu/shapes/<name>/config.json)")
    p.set_defaults(func=launch)

    p = subparsers.add_parser("resume", help="continue a run from its newest valid checkpoint")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory that `launch` wrote")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="allowed changes, e.g. run.steps=300 eval.every=20 (model, data, algorithm are refused)")
    p.add_argument("--address", help="Ray address to join instead of starting a local cluster")
    p.set_defaults(func=resume)


def launch(args: argparse.Namespace) -> int:
    from rl.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.address:
        recipe.cluster.address = args.address
    run_dir = Path(args.run_dir or Path("runs") / recipe.run.name)
    if args.dry_run:
        live = bool(args.address) and args.nodes is None
        return _dry_run(recipe, run_dir, live, args.nodes, args.gpus_per_node, args.cpus_per_node,
                        gpu_memory_gb=args.gpu_memory_gb, model_config=args.model_config)
    saved = _saved_config(run_dir)
    if saved is not None:
        changed = _changes(saved, recipe)
        finished = _steps_done(run_dir, finished_only=True)
        if not (finished is not None and finished >= recipe.run.steps and not changed) and not args.resume:
            from core.errors import UserError

            done = _steps_done(run_dir) or 0
            state = f"a finished run (with {', '.join(changed[:3])} changed)" if finished is not None \
                else f"an unfinished run (step {done} of {saved.get('run', {}).get('steps', '?')})"
            raise UserError(f"{run_dir} holds {state}: `asymptote resume {run_dir}` continues it "
                            f"(or `launch --resume`); use another --run-dir for a new run")
        _check_resumable(changed, run_dir)
    return _run(recipe, run_dir)


def resume(args: argparse.Namespace) -> int:
    from core.errors import UserError
    from rl.recipe import load_recipe

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: not a run directory (no config.yaml); start one with `asymptote launch`")
    recipe = load_recipe(run_dir / "config.yaml", args.overrides)
    if args.address:
        recipe.cluster.address = args.address
    _check_resumable(_changes(_saved_config(run_dir), recipe), run_dir)
    return _run(recipe, run_dir)


def _run(recipe, run_dir: Path) -> int:
    from rl.checkpoint import CheckpointStore
    from rl.controller import Controller

    if recipe.cluster.address:  # a wrong address is one line, not a hang and a traceback
        from rl.ray_address import connect

        connect(recipe.cluster.address, recipe.cluster.namespace)
    # the checkpoint a resume picks is refused in one line before Ray and the engines start
    # (rl.checkpoint_read); the controller picks it again and says what it skipped
    CheckpointStore(run_dir, checksums=recipe.run.checkpoint_checksums, warn=lambda _: None).latest()
    summary = Controller(recipe, run_dir).run()
    start, end = summary.get("pass_rate_start"), summary.get("pass_rate_end")
    line = f"done: {summary['steps']} steps, held-out pass rate {start:.3f} -> {end:.3f}" if start is not None else "done"
    if "fit/A" in summary:
        line += f", fitted asymptote A = {summary['fit/A']:.3f} [{summary.get('fit/A_lo', float('nan')):.3f}, {summary.get('fit/A_hi', float('nan')):.3f}]"
    print(line + f"; run dir {run_dir}", file=sys.stderr)
    return 0


def _dry_run(recipe, run_dir: Path, live: bool, nodes: int | None, gpus_per_node: float,
             cpus_per_node: float | None, *, gpu_memory_gb: float | None = None,
             model_config: str | None = None) -> int:
    """The resolved recipe, the resource plan and the per-node plan: against
    the live cluster given by --address (`live`), else --nodes identical nodes, else (no
    GPUs) the embedded local cluster, else as many nodes of --gpus-per-node
    GPUs as the GPUs need. Then the memory plan (rl/dry_run_memory.py), printed
    before a refusal so the line can be read against it."""
    import math

    from rl.dry_run_memory import memory_section
    from rl.placement import Node, live_nodes, local_cluster_cpus, plan_resources, uniform_nodes
    from rl.recipe import to_yaml

    plan = plan_resources(recipe)
    if live:
        import ray

        from rl.ray_address import connect

        connect(recipe.cluster.address, recipe.cluster.namespace)
        try:
            cluster = live_nodes()
        finally:
            ray.shutdown()
    elif nodes is not None:
        cluster = uniform_nodes(nodes, gpus_per_node, cpus_per_node)
    elif plan.total("GPU") == 0:
        cpus = recipe.cluster.num_cpus or local_cluster_cpus(plan)
        extra = {k: math.inf for role in plan.roles for k in role.resources}
        cluster = [Node("local", {"CPU": float(cpus), "GPU": 0.0, **extra})]
    else:
        cluster = uniform_nodes(max(1, math.ceil(plan.total("GPU") / gpus_per_node)), gpus_per_node, cpus_per_node)
    per_node = plan.nodes_plan(cluster)  # refuses a plan that cannot fit, in one line
    print(to_yaml(recipe), end="")
    print(f"# run dir: {run_dir}")
    memory, refusal = memory_section(recipe, gpu_memory_gb, model_config)
    for text in (plan.describe(), per_node.describe(), memory):
        print("\n".join("# " + line for line in text.splitlines()))
    if refusal:
        from core.errors import UserError

        raise UserError(refusal)
    return 0


def _saved_config(run_dir: Path) -> dict | None:
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text()) or {}


def _changes(saved: dict, recipe) -> list[str]:
    """Dotted keys whose value differs between the saved config and `recipe`
    (keys the saved config lacks count as unchanged when at their default)."""
    from rl.recipe import Recipe, validate

    try:
        old = validate(saved, source="config.yaml").model_dump(mode="json")
    except Exception:  # noqa: BLE001 - a config from an older version: compare raw
        old = {**Recipe().model_dump(mode="json"), **saved}
    new = recipe.model_dump(mode="json")
    old, new = _flat(old), _flat(new)
    return [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_resumable(changed: list[str], run_dir: Path) -> None:
    from core.config_marks import covers
    from core.errors import UserError
    from rl.recipe import RESUMABLE

    refused = [k for k in changed if not covers(RESUMABLE, k)]
    if refused:
        why = "learner world size (refused, not resharded)" if "learner.ranks" in refused else "what the run learns"
        raise UserError(f"{run_dir}: resuming with '{refused[0]}' changed would corrupt the run ({why}); "
                        f"keep it as in {run_dir / 'config.yaml'} or start a new run dir")


def _steps_done(run_dir: Path, finished_only: bool = False) -> int | None:
    """Steps the run logged (from summary.json when finished, else metrics.jsonl)."""
    summary = run_dir / "summary.json"
    if summary.is_file():
        return int(json.loads(summary.read_text()).get("steps", 0))
    if finished_only:
        return None
    path = run_dir / "metrics.jsonl"
    steps = 0
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                steps = max(steps, int(json.loads(line).get("step", 0)))
            except (ValueError, AttributeError):
                continue
    return steps

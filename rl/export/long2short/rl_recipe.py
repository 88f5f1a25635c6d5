"""long2short RL (Kimi k1.5 §2.4): a short RL run with the Kimi length
reward and a much smaller maximum response length (recipes/long2short.yaml),
started from the source run's best accuracy-per-token checkpoint.

Which checkpoint: among the run's valid checkpoints whose step has a
held-out evaluation in metrics.jsonl, the one with the highest
eval/pass_rate / eval/length_mean (ties: the more accurate, then the later).
Retention keeps the newest checkpoints and the best by pass rate, so these
are the candidates. A source without metrics (a Hugging Face folder) starts
from itself. The choice and the candidates are returned for the card.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from core.errors import UserError
from rl.export.long2short.config import RLSettings

ROOT = Path(__file__).resolve().parents[3]


def eval_rows(run_dir: Path) -> dict[int, dict]:
    """{step: the step's metrics} for the steps that logged an evaluation."""
    path = Path(run_dir) / "metrics.jsonl"
    out: dict[int, dict] = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "eval/pass_rate" in row and row.get("eval/length_mean"):
            out[int(row["step"])] = row
    return out


def pick_efficient_checkpoint(run_dir: Path) -> dict:
    """{"step", "pass_rate", "length_mean", "per_token", "candidates"} of the
    best accuracy-per-token checkpoint of `run_dir`."""
    from rl.checkpoint import CheckpointStore

    store = CheckpointStore(run_dir, warn=lambda _: None)
    valid = [store.load(p).step for p in store.all() if store.problem(p) is None]
    evals = eval_rows(run_dir)
    candidates = [{"step": s, "pass_rate": evals[s]["eval/pass_rate"], "length_mean": evals[s]["eval/length_mean"],
                   "per_token": evals[s]["eval/pass_rate"] / evals[s]["eval/length_mean"]}
                  for s in valid if s in evals]
    if not candidates:
        raise UserError(f"{run_dir}: no valid checkpoint at a step with a held-out evaluation in metrics.jsonl "
                        f"(checkpoints at {valid or 'none'}); pass --step to pick one")
    best = max(candidates, key=lambda c: (c["per_token"], c["pass_rate"], c["step"]))
    return {**best, "candidates": candidates}


def describe(choice: dict) -> str:
    steps = ", ".join(str(c["step"]) for c in choice["candidates"])
    return (f"step {choice['step']}: held-out pass rate {choice['pass_rate']:.3f} at {choice['length_mean']:.1f} "
            f"tokens ({1000 * choice['per_token']:.2f} per 1000 tokens), best of checkpoints {steps}")


def run(start: Path, out: Path, cfg: RLSettings, run_dir: Path, choice: Optional[dict]) -> dict:
    """Run the recipe from model folder `start` in `run_dir`, export its
    final checkpoint to `out`."""
    from rl.controller import Controller
    from rl.export.hf import export_hf
    from rl.recipe import load_recipe

    path = Path(cfg.recipe)
    if not path.is_file() and (ROOT / path).is_file():  # the shipped recipe, from any working directory
        path = ROOT / path
    recipe = load_recipe(path, [*cfg.overrides, f"model.base={Path(start).resolve()}"])
    if (run_dir / "config.yaml").exists():
        raise UserError(f"{run_dir}: already holds a run; remove it or pass another --rl-run-dir")
    summary = Controller(recipe, run_dir).run()
    export_hf(run_dir, out, force=True)
    return {"settings": {**cfg.model_dump(), "run_dir": str(run_dir), "steps": recipe.run.steps,
                         "max_new_tokens": recipe.rollout.max_new_tokens, "kimi_length": recipe.rewards.kimi_length},
            "start": choice, "chosen": describe(choice) if choice else f"started from {start} (no run metrics)",
            "run_summary": {k: v for k, v in (summary or {}).items() if isinstance(v, (int, float, str))}}

"""The pipeline's own costs, on the default recipe: the gain of
asynchrony (k = 2 against k = 0), and step time as batch and length grow.

Every run is `recipes/tiny-arith.yaml` through `Controller`, set up as
bench_e2e's ours (its `load_default_recipe`: evaluation cut to 1 prompt x 1
sample at step 0 and the last step, no checkpoints, no monitor, no wandb),
one run after another, each starting its own Ray and vLLM engine.

- async: `pipeline.max_off_policy_steps=0` [baseline] against `=2` (ours,
  the recipe's default), all else equal. At k = 0 the schedule
  (rl/schedule.py `fill`) submits only step t's job, with min_version t, at
  the start of step t, after the engines got version t at the end of step
  t-1 (`sync_due` is always true in pipeline mode): generate, score, train,
  sync, strictly one after another, so the engine idles while the learner
  trains and syncs and the learner idles while the engine generates. At
  k = 2 the jobs of steps t..t+2 are in flight while the learner trains
  step t. Reported: steady-state samples/s (bench_e2e's `steady`) and the
  medians of `time/engine_idle` and `time/learner_idle` over the same
  window, and the ratio k2 / k0 (> 1: asynchrony pays).
- scaling: k = 2, prompts_per_step in 8 16 32 at max_new_tokens 64, and
  max_new_tokens in 32 64 128 at 16 prompts (8 samples a prompt throughout;
  `rollout.engine.max_model_len` = max_new_tokens + 32, as the recipe's 96
  for 64: prompts are at most 12 tokens). Per point: s/step and the medians
  of `time/step`, `time/train`, `time/generate` (one job, admission to last
  group scored: at k = 2 it overlaps training and shares the engine with
  the other jobs in flight, so the parts need not add up to the step),
  `time/weight_sync`; mean response length and truncation rate (the tiny
  base answers in about 40 tokens and stops, so a longer budget buys few
  tokens), and cost per token: step wall ms per generated token, learner ms
  (`time/train`) per trained (prompt + response) token.
  The (16, 64) point is the async part's k = 2 run when both parts run.
  The plot (`--plot`): s/step and its parts against samples per step and
  against mean response tokens.

- eval: evaluation waited for (`eval.interleave=false`) [baseline] against
  interleaved with training (`=true`), k = 2, an evaluation every
  `--eval-every` steps of `--eval-prompts` held-out prompts x 4 samples (and
  at step 0 and the last step, waited for in both runs), at the tiny default
  model or `--model large` (bench_e2e's 24M random-init Qwen2, 128 new
  tokens, where the learner is the bottleneck). Waited for, the learner idles
  while the engines generate the evaluation; interleaved, it trains up to
  k + 1 steps meanwhile. Reported: the whole loop's seconds per step (the
  last row's `time/elapsed` over the steps: every evaluation but step 0's
  inside), the medians of `time/eval` and of the idle fractions over all
  steps, and the ratio (> 1: interleaving pays).

Steady state: steps warmup+1 .. N-3 (the default recipe's drain, k+1 = 3,
for every run, k = 0 included, so both sides share one window).

    python bench/bench_pipeline.py [--steps 12] [--warmup 3] [--only async|scaling|eval]
        [--prompts 8 16 32] [--tokens 32 64 128] [--plot bench/pipeline_scaling.png] [--json]
        [--model tiny|large] [--dtype float32|bfloat16] [--eval-every 4] [--eval-prompts 200]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import (drain_steps, dtype_overrides, load_default_recipe, model_overrides,  # noqa: E402
                       run_controller, steady, step_work)

SAMPLES_PER_PROMPT = 8
CONTEXT_MARGIN = 32  # max_model_len - max_new_tokens, as the recipe's 96 for 64
PARTS = ("time/step", "time/train", "time/generate", "time/weight_sync", "time/wait_rollout",
         "time/engine_idle", "time/learner_idle")


def run_point(steps: int, warmup: int, k: int, prompts: int, tokens: int) -> dict:
    """One Controller run of the default recipe at these settings: steady rates
    and per-stage medians over the steady window."""
    overrides = (f"pipeline.max_off_policy_steps={k}", f"rollout.prompts_per_step={prompts}",
                 f"rollout.max_new_tokens={tokens}", f"rollout.engine.max_model_len={tokens + CONTEXT_MARGIN}")
    load = os.getloadavg()[0]
    wall, rows = run_controller(steps, overrides)
    per_step = step_work(rows)
    drain = drain_steps()
    window = rows[warmup:len(rows) - drain]
    out = {"k": k, "prompts": prompts, "max_new_tokens": tokens, "load_before": load, "total_wall_s": wall,
           "steps": len(rows), **steady(per_step, warmup, drain)}
    for key in PARTS:
        vals = [m[key] for m in window if key in m]
        out[key.split("/")[1]] = statistics.median(vals) if vals else float("nan")
    # steady's rates are window sums over the window's seconds: times seconds per step, per-step means
    out["samples_per_step"] = out["samples_per_s"] * out["seconds_per_step"]
    out["train_tokens_per_step"] = out["train_tokens_per_s"] * out["seconds_per_step"]
    out["truncation_rate"] = statistics.mean(m.get("rollout/truncation_rate", 0.0) for m in window)
    out["ms_per_gen_token"] = 1000.0 / out["gen_tokens_per_s"]
    out["learner_ms_per_train_token"] = (1000.0 * out["train"] / out["train_tokens_per_step"]
                                         if out["train_tokens_per_step"] else float("nan"))
    return out


def run_eval_point(steps: int, interleave: bool, model: str, dtype: str, every: int, prompts: int) -> dict:
    """One run with evaluations every `every` steps, waited for or interleaved."""
    overrides = (*model_overrides(model), *dtype_overrides(dtype), f"eval.every={every}",
                 f"eval.prompts={prompts}", "eval.k=4", f"eval.interleave={str(interleave).lower()}")
    load = os.getloadavg()[0]
    wall, rows = run_controller(steps, overrides)
    med = {k: statistics.median(m[k] for m in rows if k in m) if any(k in m for m in rows) else float("nan")
           for k in ("time/eval", "time/engine_idle", "time/learner_idle", "time/train")}
    return {"interleave": interleave, "model": model, "dtype": dtype, "eval_every": every, "eval_prompts": prompts,
            "load_before": load, "total_wall_s": wall, "steps": len(rows),
            "evals": sum("eval/pass_rate" in m for m in rows),
            "loop_s_per_step": rows[-1]["time/elapsed"] / len(rows),
            **{k.split("/")[1]: v for k, v in med.items()}}


def _print_header(head: str) -> None:
    """A table's column names, underlined."""
    print(head)
    print("-" * len(head))


def print_eval(res: dict, steps: int) -> None:
    off, on = res["waited"], res["interleaved"]
    print(f"evaluation: {off['model']} model in {off['dtype']}, k = 2, {steps} steps, an evaluation of "
          f"{off['eval_prompts']} prompts x 4 every {off['eval_every']} steps ({off['evals']} in the loop, "
          "the last waited for in both runs); medians over all steps")
    head = (f"{'run':36s} {'loop s/step':>11s} {'eval s':>7s} {'train s':>7s} {'engine idle':>12s} "
            f"{'learner idle':>13s} {'wall s':>7s} {'load':>5s}")
    _print_header(head)
    for name, r in (("evaluation waited for [baseline]", off), ("evaluation interleaved", on)):
        print(f"{name:36s} {r['loop_s_per_step']:11.2f} {r['eval']:7.2f} {r['train']:7.2f} {r['engine_idle']:12.2f} "
              f"{r['learner_idle']:13.2f} {r['total_wall_s']:7.1f} {r['load_before']:5.1f}")
    print(f"{'ratio waited / interleaved':36s} {res['ratio']:10.2f}x   (> 1: interleaving pays)")


def print_async(res: dict, steps: int, warmup: int) -> None:
    k0, k2 = res["k0"], res["k2"]
    print(f"asynchrony: default recipe (16 prompts x 8, max 64 new tokens), {steps} steps, steady state over steps "
          f"{warmup + 1}..{steps - drain_steps()}; medians over the same steps")
    head = (f"{'run':34s} {'samples/s':>10s} {'gen tok/s':>10s} {'s/step':>7s} {'engine idle':>12s} "
            f"{'learner idle':>13s} {'wall s':>7s} {'load':>5s}")
    _print_header(head)
    for name, r in (("k = 0, synchronous [baseline]", k0), ("k = 2, PipelineRL (default)", k2)):
        print(f"{name:34s} {r['samples_per_s']:10.1f} {r['gen_tokens_per_s']:10.1f} {r['seconds_per_step']:7.2f} "
              f"{r['engine_idle']:12.2f} {r['learner_idle']:13.2f} {r['total_wall_s']:7.1f} {r['load_before']:5.1f}")
    gen = k2["gen_tokens_per_s"] / k0["gen_tokens_per_s"]
    print(f"{'ratio k2 / k0':34s} {res['ratio_samples_per_s']:9.2f}x {gen:9.2f}x "
          f"{k2['seconds_per_step'] / k0['seconds_per_step']:6.2f}x")
    print("(rates: >1 means k = 2 is faster; s/step: <1 means k = 2 is faster)")


def print_scaling(points: list[dict], steps: int, warmup: int) -> None:
    print(f"scaling: k = 2, 8 samples a prompt, {steps} steps, steady state over steps "
          f"{warmup + 1}..{steps - drain_steps()}; stage columns are medians (s), generate overlaps train at k = 2")
    head = (f"{'prompts':>7s} {'max new':>7s} {'samples':>7s} {'resp len':>8s} {'trunc':>6s} {'s/step':>7s} "
            f"{'step':>6s} {'train':>6s} {'generate':>8s} {'sync':>6s} {'samples/s':>9s} "
            f"{'ms/gen tok':>10s} {'learner ms/train tok':>20s} {'load':>5s}")
    _print_header(head)
    for p in points:
        print(f"{p['prompts']:7d} {p['max_new_tokens']:7d} {p['samples_per_step']:7.0f} "
              f"{p['mean_completion_tokens']:8.1f} {p['truncation_rate']:6.2f} {p['seconds_per_step']:7.2f} "
              f"{p['step']:6.2f} {p['train']:6.2f} {p['generate']:8.2f} {p['weight_sync']:6.3f} "
              f"{p['samples_per_s']:9.1f} {p['ms_per_gen_token']:10.3f} {p['learner_ms_per_train_token']:20.4f} "
              f"{p['load_before']:5.1f}")


def plot(by_prompts: list[dict], by_tokens: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    series = (("seconds_per_step", "s/step (steady)", "o-"), ("train", "time/train", "s--"),
              ("generate", "time/generate", "^--"), ("weight_sync", "time/weight_sync", "v:"))
    panels = ((axes[0], by_prompts, "samples_per_step", "samples per step (prompts x 8)",
               f"max_new_tokens {by_prompts[0]['max_new_tokens'] if by_prompts else ''}"),
              (axes[1], by_tokens, "mean_completion_tokens", "mean response tokens",
               f"{by_tokens[0]['prompts'] if by_tokens else ''} prompts x 8; max_new_tokens labelled"))
    for ax, pts, x, xlabel, title in panels:
        xs = [p[x] for p in pts]
        for key, label, style in series:
            ax.plot(xs, [p[key] for p in pts], style, label=label)
        if x == "mean_completion_tokens":
            for p in pts:
                ax.annotate(str(p["max_new_tokens"]), (p[x], p["seconds_per_step"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("tiny-arith, k = 2: step time as work grows")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    ap.add_argument("--warmup", type=int, default=3, help="first steps left out of the steady state")
    ap.add_argument("--only", choices=("async", "scaling", "eval"), help="run one part (eval runs only when named)")
    ap.add_argument("--model", choices=("tiny", "large"), default="tiny", help="model of the eval part")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="eval part: compute dtype")
    ap.add_argument("--eval-every", type=int, default=4, help="eval part: steps between evaluations")
    ap.add_argument("--eval-prompts", type=int, default=200, help="eval part: held-out prompts per evaluation")
    ap.add_argument("--prompts", type=int, nargs="+", default=[8, 16, 32], help="prompts_per_step at 64 tokens")
    ap.add_argument("--tokens", type=int, nargs="+", default=[32, 64, 128], help="max_new_tokens at 16 prompts")
    ap.add_argument("--plot", type=Path, default=Path(__file__).resolve().parent / "pipeline_scaling.png")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    args = ap.parse_args()
    if args.steps < args.warmup + drain_steps() + 1:
        ap.error(f"--steps must be at least --warmup + {drain_steps() + 1}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rl.base.build import resolve_base

    default = load_default_recipe(args.steps)
    resolve_base(default.model.base)  # a first-time build is timed by no run
    base_prompts, base_tokens = default.rollout.prompts_per_step, default.rollout.max_new_tokens
    cache: dict[tuple, dict] = {}

    def point(k: int, prompts: int, tokens: int) -> dict:
        if (k, prompts, tokens) not in cache:
            cache[k, prompts, tokens] = run_point(args.steps, args.warmup, k, prompts, tokens)
        return cache[k, prompts, tokens]

    out: dict = {"steps": args.steps, "warmup": args.warmup, "drain": drain_steps(), "cpus": os.cpu_count()}
    if args.only in (None, "async"):
        k0, k2 = point(0, base_prompts, base_tokens), point(2, base_prompts, base_tokens)
        out["async"] = {"k0": k0, "k2": k2, "ratio_samples_per_s": k2["samples_per_s"] / k0["samples_per_s"]}
    if args.only in (None, "scaling"):
        by_prompts = [point(2, n, base_tokens) for n in args.prompts]
        by_tokens = [point(2, base_prompts, t) for t in args.tokens]
        points = list({(p["prompts"], p["max_new_tokens"]): p for p in by_prompts + by_tokens}.values())
        plot(by_prompts, by_tokens, args.plot)
        out["scaling"] = {"points": points, "plot": str(args.plot)}
    if args.only == "eval":
        point_args = (args.model, args.dtype, args.eval_every, args.eval_prompts)
        off, on = run_eval_point(args.steps, False, *point_args), run_eval_point(args.steps, True, *point_args)
        out["eval"] = {"waited": off, "interleaved": on, "ratio": off["loop_s_per_step"] / on["loop_s_per_step"]}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    if "eval" in out:
        print_eval(out["eval"], args.steps)
    if "async" in out:
        print_async(out["async"], args.steps, args.warmup)
    if "scaling" in out:
        if "async" in out:
            print()
        print_scaling(out["scaling"]["points"], args.steps, args.warmup)
        print(f"plot: {out['scaling']['plot']}")


if __name__ == "__main__":
    main()

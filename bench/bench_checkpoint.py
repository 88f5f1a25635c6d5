"""A learner step with a checkpoint: written while the controller waits
[baseline] against written in the background (`run.async_checkpoint`, DCP
`async_save`), in one invocation, with a plain step beside them.

Ours is the default recipe's `LearnerGroup` (2 FSDP2 ranks over gloo, float32,
AdamW; no placement group, Ray started as bench_learner.py starts it) on
bench_learner's batch (--prompts 16 x --samples 8, responses 40 +- 12 tokens), on
`--model tiny` (the tiny-arith base), `large` (bench_e2e's 24M random-init
Qwen2) or `qwen05` (bench_memory's 494M Qwen2.5-0.5B shape, vocab 151936;
a checkpoint of model + AdamW state is about 6 GB). Rounds take turns, each
timed on the driver as the controller calls the learner:

- plain: `train_step`;
- waited: `save_checkpoint(path)` then `train_step` (the controller's wait
  for the write, then the next step);
- background: `save_checkpoint(path, background=True)`, `train_step`, then
  `finish_checkpoint` (the seal the controller does after the next step).

Every checkpoint goes to a fresh folder under .cache/bench (the disk runs
write to), deleted after its round. Figures: median seconds per round, the
checkpoint's cost over a plain step (round - plain), and the ratio waited
round / background round (> 1: the background write pays). The sha256 of
the manifest (controller side, the same in both modes) is not included.
Learner rank 0's peak resident memory per kind of round is printed too: the
background write holds a copy of the rank's shards while it runs.

    python bench/bench_checkpoint.py [--model tiny|large|qwen05] [--prompts 16] [--samples 8] [--rounds 4]
        [--warmup 1] [--json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learner import make_batch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / ".cache" / "bench" / "ckpt-scratch"


def model_path(model: str) -> str:
    from rl.base.build import resolve_base
    from rl.recipe import load_recipe

    if model == "large":
        from bench_e2e import build_large
        return str(build_large())
    if model == "qwen05":
        from bench_memory import build_qwen05_shape
        return str(build_qwen05_shape(ROOT / ".cache" / "bench", 151936)[0])
    return str(resolve_base(load_recipe("recipes/tiny-arith.yaml").model.base))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("tiny", "large", "qwen05"), default="tiny")
    ap.add_argument("--prompts", type=int, default=16, help="prompt groups in the batch (qwen05: use 4)")
    ap.add_argument("--samples", type=int, default=8, help="samples per prompt (qwen05: use 2)")
    ap.add_argument("--rounds", type=int, default=4, help="timed rounds of each kind")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds of each kind")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import ray

    from rl.learner.group import LearnerGroup
    from rl.recipe import load_recipe

    recipe = load_recipe("recipes/tiny-arith.yaml")
    path = model_path(args.model)
    conf = json.loads((Path(path) / "config.json").read_text())
    batch = make_batch(args.prompts, args.samples, 40, conf["vocab_size"], recipe.algo, conf.get("pad_token_id") or 0)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    times: dict[str, list[float]] = {"plain": [], "waited": [], "background": []}
    peaks: dict[str, float] = {k: 0.0 for k in times}
    ckpt_bytes = 0
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        group = LearnerGroup(recipe.learner, recipe.algo, path, recipe.rollout.temperature, recipe.run.seed)
        rank0 = group.actors[0]
        try:
            for i in range(args.warmup + args.rounds):
                for kind in times:
                    where = SCRATCH / f"{kind}-{i}"
                    ray.get(rank0.peak_rss_gb.remote())  # a new peak window
                    t0 = time.perf_counter()
                    if kind != "plain":
                        group.save_checkpoint(str(where), background=kind == "background")
                    group.train_step(batch)
                    if kind == "background":
                        group.finish_checkpoint()
                    dt = time.perf_counter() - t0
                    peaks[kind] = max(peaks[kind], ray.get(rank0.peak_rss_gb.remote()))
                    if where.exists():
                        ckpt_bytes = sum(f.stat().st_size for f in where.rglob("*") if f.is_file())
                        shutil.rmtree(where)
                    if i >= args.warmup:
                        times[kind].append(dt)
                    print(f"round {i + 1}/{args.warmup + args.rounds} {kind}: {dt:.2f} s", file=sys.stderr)
        finally:
            group.shutdown()
    finally:
        ray.shutdown()
        shutil.rmtree(SCRATCH, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"model": args.model, "checkpoint_gb": ckpt_bytes / 1e9, "median_s": med, "raw_s": times,
           "rank0_peak_gb": peaks, "overhead_s": {k: med[k] - med["plain"] for k in ("waited", "background")},
           "ratio_waited_over_background": med["waited"] / med["background"], "settings": vars(args)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.model} model, batch {args.prompts} x {args.samples}, checkpoint {out['checkpoint_gb']:.2f} GB (model + AdamW, 2 ranks); median of "
          f"{args.rounds} rounds after {args.warmup} warm-up, taking turns")
    print(f"{'round':<44}{'median s':>9}{'over plain s':>13}{'rank0 peak GB':>14}")
    for kind, name in (("plain", "plain train step"), ("waited", "checkpoint waited for, then a step [baseline]"),
                       ("background", "checkpoint in the background during a step")):
        over = "" if kind == "plain" else f"{out['overhead_s'][kind]:13.2f}"
        print(f"{name:<44}{med[kind]:9.2f}{over:>13}{peaks[kind]:14.2f}")
    print(f"ratio waited / background = {out['ratio_waited_over_background']:.2f}x (> 1: the background write pays)")


if __name__ == "__main__":
    main()

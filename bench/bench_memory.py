"""Peak memory per role and weight-sync bandwidth of the default recipe at a
real model size (a Qwen2.5-0.5B-shaped model), against a raw broadcast of
the same bytes measured in the same invocation.

- model: Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads, 2 KV heads,
  FFN 4864, tied embeddings), random init, float32, saved as a local folder
  (`model.base=<folder>`). `--vocab 151936` (default) is Qwen's vocabulary
  size: 494M parameters, 1.98 GB (a Qwen2.5-0.5B shape); the project's tokenizer
  uses only its first ids. `--vocab 0` keeps the tiny tokenizer's vocabulary
  (358M parameters).
- ours: `recipes/tiny-arith.yaml` through `Controller` with that base
  (2 FSDP2 learner ranks over gloo, 1 vLLM rollout worker, broadcast weight
  sync, up to 2 steps off-policy), 4 prompts x 2 samples x 16 new tokens per
  step, one evaluation of 1 prompt x 1 sample at the start and the end, no
  checkpoints, no live fit. `algo.zero_variance_filter=false`: a random model
  earns reward 0 on every sample, and the filter would then skip every update
  (and so every weight push); with it off the learner takes full steps on
  zero advantages (AdamW state allocated, weights pushed every step). Per step it reads `mem/*_peak_gb` (each process's VmHWM since
  the previous step) and `time/weight_sync`.
- baseline: `torch.distributed` gloo broadcast of the same number of bytes
  from one process to another, in 256 MB buckets, timed warm (the best of 3
  after one untimed pass).

Sync bandwidth is model bytes / `time/weight_sync` of the steps that pushed
new weights (each learner rank sending its own shards, no gather, and vLLM's
in-place reload); the ratio is against the raw broadcast's bandwidth.

Needs about 16 GiB free (`free -g`); it refuses to start with less.

    python bench/bench_memory.py [--steps 5] [--vocab 151936] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny-arith.yaml"
QWEN05 = dict(hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, ffn_size=4864,
              max_positions=256, tie_embeddings=True)


def build_qwen05_shape(out: Path, vocab: int) -> tuple[Path, int]:
    """A random-init Qwen2.5-0.5B-shaped folder (cached); returns (path, bytes)."""
    import torch
    from transformers import Qwen2ForCausalLM

    from rl.base.config import ArchConfig
    from rl.base.model import qwen2_config
    from rl.base.tokenizer import build_tokenizer

    path = out / f"qwen05-shape-v{vocab or 'tiny'}"
    tok = build_tokenizer()
    if not (path / "config.json").is_file():
        cfg = qwen2_config(ArchConfig(**QWEN05), tok)
        if vocab:
            cfg.vocab_size = vocab
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(cfg)
        model.save_pretrained(path)
        tok.save_pretrained(path)
        del model
    from safetensors import safe_open
    nbytes = 0
    for f in path.glob("*.safetensors"):
        with safe_open(f, "pt") as st:
            for k in st.keys():
                if k != "lm_head.weight":
                    t = st.get_slice(k)
                    n = 1
                    for d in t.get_shape():
                        n *= d
                    nbytes += n * 4
    return path, nbytes


# ---- baseline: raw gloo broadcast --------------------------------------------------
def _raw_rank(rank: int, world: int, port: int, nbytes: int, bucket: int, repeats: int, q) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, world, is_master=False)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    sizes = [min(bucket, nbytes - o) for o in range(0, nbytes, bucket)]
    times = []
    for _ in range(repeats + 1):
        dist.barrier()
        t0 = time.perf_counter()
        for s in sizes:
            buf = torch.empty(s, dtype=torch.uint8)
            dist.broadcast(buf, 0)
            del buf
        dist.barrier()
        times.append(time.perf_counter() - t0)
    dist.destroy_process_group()
    if rank == 0:
        q.put(times)


def raw_broadcast(nbytes: int, bucket: int = 256 << 20, receivers: int = 1, repeats: int = 3) -> dict:
    """One process broadcasting `nbytes` to `receivers` others over gloo, in
    `bucket`-byte buffers: the best of `repeats` after one untimed pass."""
    import torch.multiprocessing as mp

    from core.ports import host_store

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    world = 1 + receivers
    store = host_store("127.0.0.1", world)  # held here, on a port the OS picked, until the ranks finish
    port = store.port
    procs = [ctx.Process(target=_raw_rank, args=(r, world, port, nbytes, bucket, repeats, q)) for r in range(world)]
    for p in procs:
        p.start()
    times = q.get(timeout=600)
    for p in procs:
        p.join()
    warm = min(times[1:])
    return {"bytes": nbytes, "cold_s": times[0], "warm_s": warm, "gb_per_s": nbytes / 1e9 / warm}


# ---- ours ----------------------------------------------------------------------
def run_ours(base: Path, steps: int) -> list[dict]:
    import ray

    from rl.controller import Controller
    from rl.metrics_log import read_rows
    from rl.recipe import load_recipe

    recipe = load_recipe(RECIPE, [
        f"model.base={base}", f"run.steps={steps}", f"eval.every={steps + 1000}", "eval.prompts=1", "eval.k=1",
        "rollout.prompts_per_step=4", "rollout.samples_per_prompt=2", "rollout.max_new_tokens=16",
        "algo.zero_variance_filter=false",  # a random model scores 0 everywhere: train on zero advantages anyway
        "run.checkpoint_every=0", "monitor.enabled=false", "run.progress=false", "run.wandb_mode=disabled"])
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        run_dir = Path(tmp) / "run"
        try:
            Controller(recipe, run_dir).run()
        finally:
            ray.shutdown()
        rows = read_rows(run_dir)
    return [r for r in rows if r.get("step", 0) > 0]


def free_gib() -> float:
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) for line in f}
    return info["MemAvailable"] / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=151936, help="0: the tiny tokenizer's vocabulary")
    ap.add_argument("--cache", default=os.environ.get("ASYMPTOTE_CACHE", ".cache/bench"))
    ap.add_argument("--min-free-gib", type=float, default=16.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if free_gib() < args.min_free_gib:
        raise SystemExit(f"bench_memory: {free_gib():.1f} GiB available, needs {args.min_free_gib:.0f}; not started")
    base, nbytes = build_qwen05_shape(Path(args.cache), args.vocab)
    raw = raw_broadcast(nbytes)
    steps = run_ours(base, args.steps)
    pushed = [r for r in steps if "sync/gb_per_s" in r]
    roles = ("learner", "learner0", "rollout", "driver")
    out = {
        "model": {"path": str(base), "bytes": nbytes, "vocab": args.vocab or "tiny"},
        "raw_broadcast": raw,
        "steps": [{"step": r["step"], **{k: r[k] for k in r if k.startswith("mem/")},
                   "weight_sync_s": r.get("time/weight_sync"), "sync_gb_per_s": r.get("sync/gb_per_s"),
                   "train_s": r.get("time/train"), "step_s": r.get("time/step")} for r in steps],
        "peak_gb": {role: max((r.get(f"mem/{role}_peak_gb", 0.0) for r in steps), default=None) for role in roles},
    }
    if pushed:
        best = max(r["sync/gb_per_s"] for r in pushed)
        out["sync"] = {"best_gb_per_s": best, "median_gb_per_s": sorted(r["sync/gb_per_s"] for r in pushed)[len(pushed) // 2],
                       "ratio_best_vs_raw": best / raw["gb_per_s"]}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"model: {nbytes / 1e9:.2f} GB float32 ({base.name}); {len(steps)} steps ran")
    print(f"raw gloo broadcast: {raw['gb_per_s']:.2f} GB/s warm ({raw['warm_s']:.2f} s; cold {raw['cold_s']:.2f} s)")
    for s in out["steps"]:
        print(f"step {s['step']}: " + ", ".join(f"{k.removeprefix('mem/')}={v:.2f}" for k, v in s.items() if k.startswith("mem/"))
              + f" GiB; sync {s['weight_sync_s']:.2f} s" + (f" ({s['sync_gb_per_s']:.2f} GB/s)" if s["sync_gb_per_s"] else ""))
    print("peak GiB per role: " + ", ".join(f"{k}={v:.2f}" for k, v in out["peak_gb"].items() if v is not None))
    if "sync" in out:
        print(f"sync bandwidth / raw broadcast: {out['sync']['ratio_best_vs_raw']:.2f} (best step)")


if __name__ == "__main__":
    main()

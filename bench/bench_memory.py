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

`--learner`: the peak memory of one learner step at that shape beside the
memory plan's prediction for it (rl/learner/memory_plan.py), per learner path
and sequence length; no Ray, no rollout.

- measured: one fresh process per point, so no peak carries over. It imports
  everything, sets 2 torch threads and reads its VmHWM (core.clocks); builds
  a `LearnerRank` directly (rank 0 of 1, gloo, float32, its rendezvous store
  bound here as `open_rendezvous` would), `micro_batch_tokens` = N; runs one
  warm-up step on a short batch (AdamW allocates its state in its first
  step; the state's size does not depend on the batch), restarts the peak
  window, and runs the measured step on one group of two samples, each a
  64-token prompt and an N - 64-token response (rewards 1 and 0, so the
  group carries an advantage). Each N-token sequence is a micro-batch of its
  own, and the second runs while the first one's gradients are held: the
  step every micro-batch but the first of a real step sees, and the one the
  plan describes. The figure is the measured step's VmHWM minus the VmHWM
  before the model was built. Each point runs with glibc's
  MALLOC_MMAP_THRESHOLD_ fixed at 128 KiB, so a freed tensor's pages go
  back to the system and the resident peak is the peak of live tensors,
  the quantity the plan counts. With glibc's default (a threshold that
  rises to 32 MiB as blocks are freed) the heap keeps freed blocks of up to
  32 MiB and the peak also holds what it has not returned (1.3 GiB more at
  2,048 tokens on the new path in one measurement; bench/RESULTS.md).
- plan: `learner_plan` for the same config.json and `LearnerConfig` (1 rank,
  CPU, float32, T = N).
- paths: old (packing off, full-logits head, no activation checkpointing),
  new (packing on, chunked head, checkpointing), and with `--components`
  the old path with one switch flipped (checkpointing only, chunked head
  only) at the shortest length. A point whose plan exceeds the memory
  available now minus 2 GiB is skipped, not run.

    python bench/bench_memory.py --learner [--tokens 2048 4096 8192] [--components] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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


# ---- --learner: one learner step against the memory plan --------------------------
PROMPT_TOKENS = 64
MMAP_THRESHOLD = 128 << 10  # glibc: every block from 128 KiB up is its own mapping, unmapped when freed
LEARNER_PATHS = {  # the LearnerConfig switches of each path
    "old": dict(packing=False, logprob_head="full", activation_checkpointing=False),
    "new": dict(packing=True, logprob_head="chunked", activation_checkpointing=True),
    "checkpointing only": dict(packing=False, logprob_head="full", activation_checkpointing=True),
    "chunked head only": dict(packing=False, logprob_head="chunked", activation_checkpointing=False),
}


def learner_config(path: str, tokens: int):
    from rl.learner.config import LearnerConfig
    return LearnerConfig(ranks=1, backend="gloo", dtype="float32", threads_per_rank=2,
                         micro_batch_tokens=tokens, **LEARNER_PATHS[path])


def learner_prediction(base: Path, path: str, tokens: int) -> dict:
    """The memory plan of one learner rank for this point (bytes)."""
    from rl.learner.memory_plan import ModelShape, learner_plan
    shape = ModelShape.from_config(json.loads((base / "config.json").read_text()))
    plan = learner_plan(shape, learner_config(path, tokens), fp32_lm_head=False, device_gib=None, on_gpu=False)
    return {"total": plan.total, "parts": dict(plan.parts)}


def _group_batch(tokens: int, vocab: int, seed: int):
    """A TrainBatch of one group: two samples of `tokens` tokens each
    (PROMPT_TOKENS of prompt), rewards 1 and 0."""
    import torch

    from rl.algo.batch import build_train_batch
    from rl.algo.config import AlgoConfig
    from rollout.types import Group, Sample

    g = torch.Generator().manual_seed(seed)
    ids = lambda n: torch.randint(1, vocab, (n,), generator=g).tolist()  # noqa: E731
    r = tokens - PROMPT_TOKENS
    samples = [Sample(token_ids=ids(r), logprobs=[-1.0] * r, versions=[0] * r, finish_reason="length",
                      reward=reward) for reward in (1.0, 0.0)]
    return build_train_batch([Group({}, ids(PROMPT_TOKENS), samples)], AlgoConfig(), pad_id=0)


def learner_point(base: Path, path: str, tokens: int) -> dict:
    """Run in a fresh process: the peak of one steady learner step (bytes)."""
    import psutil
    import torch

    from core.clocks import peak_rss_bytes
    from core.ports import host_store
    from rl.algo.config import AlgoConfig
    from rl.learner.rank import LearnerRank

    torch.set_num_threads(2)
    vocab = json.loads((base / "config.json").read_text())["vocab_size"]
    warmup, batch = _group_batch(PROMPT_TOKENS + 8, vocab, seed=1), _group_batch(tokens, vocab, seed=0)
    before = peak_rss_bytes(reset=True)
    rank = LearnerRank(0, 1, learner_config(path, tokens), AlgoConfig(), str(base), temperature=1.0)
    rank._store = host_store("127.0.0.1", 1)  # what open_rendezvous binds, without Ray
    t0 = time.perf_counter()
    rank.setup("127.0.0.1", rank._store.port)
    setup_peak = peak_rss_bytes(reset=True)
    model_rss = psutil.Process().memory_info().rss
    t1 = time.perf_counter()
    rank.train_step(warmup)  # AdamW's state is allocated here
    peak_rss_bytes(reset=True)
    t2 = time.perf_counter()
    metrics = rank.train_step(batch)
    peak = peak_rss_bytes()
    t3 = time.perf_counter()
    rank.shutdown()
    return {"before": before, "model": model_rss - before, "setup_peak": setup_peak - before,
            "peak": peak - before, "setup_s": t1 - t0, "warmup_s": t2 - t1, "step_s": t3 - t2,
            "loss": metrics["train/loss"], "tokens_trained": metrics["train/tokens"]}


def run_learner(base: Path, tokens: list[int], components: bool, margin_gib: float = 2.0) -> list[dict]:
    """Each point in a fresh process, shortest first (see the module docstring)."""
    points = [("new", tokens[0]), ("old", tokens[0])]
    if components:
        points += [("checkpointing only", tokens[0]), ("chunked head only", tokens[0])]
    points += [(p, n) for n in tokens[1:] for p in ("new", "old")]
    rows = []
    for path, n in points:
        plan = learner_prediction(base, path, n)
        row = {"path": path, "tokens": n, "switches": LEARNER_PATHS[path], "plan_bytes": plan["total"],
               "plan_parts": plan["parts"]}
        room = free_gib() - margin_gib
        if plan["total"] / 2**30 > room:
            row["skipped"] = f"plan predicts {plan['total'] / 2**30:.1f} GiB, {room:.1f} GiB free past the margin"
            print(f"[learner] {path} {n}: skipped ({row['skipped']})", file=sys.stderr, flush=True)
            rows.append(row)
            continue
        print(f"[learner] {path} {n}: plan {plan['total'] / 2**30:.2f} GiB, running", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, __file__, "--point", path, str(n), str(base)],
                             stdout=subprocess.PIPE, text=True, check=True,
                             env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)})
        row.update(json.loads(res.stdout.strip().splitlines()[-1]), wall_s=time.perf_counter() - t0)
        row["ratio"] = row["plan_bytes"] / row["peak"]
        print(f"[learner] {path} {n}: measured {row['peak'] / 2**30:.2f} GiB, ratio {row['ratio']:.2f}, "
              f"{row['wall_s']:.0f} s", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def print_learner(rows: list[dict], base: Path) -> None:
    print(f"model: {base.name} (random init, float32); 1 learner rank, gloo, 2 threads, head_chunk_tokens 1024")
    for name, switches in LEARNER_PATHS.items():
        if any(r["path"] == name for r in rows):
            print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in switches.items()))
    print(f"{'path':<20} {'tokens':>6} {'measured GiB':>12} {'plan GiB':>9} {'plan/measured':>13} "
          f"{'model GiB':>9} {'step s':>7} {'wall s':>7}")
    for r in rows:
        head = f"{r['path']:<20} {r['tokens']:>6}"
        if "skipped" in r:
            print(f"{head} {'-':>12} {r['plan_bytes'] / 2**30:>9.2f}  skipped: {r['skipped']}")
            continue
        print(f"{head} {r['peak'] / 2**30:>12.2f} {r['plan_bytes'] / 2**30:>9.2f} {r['ratio']:>13.2f} "
              f"{r['model'] / 2**30:>9.2f} {r['step_s']:>7.0f} {r['wall_s']:>7.0f}")


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
    ap.add_argument("--learner", action="store_true", help="one learner step against the memory plan")
    ap.add_argument("--tokens", type=int, nargs="+", default=[2048, 4096, 8192], help="--learner: sequence lengths")
    ap.add_argument("--components", action="store_true",
                    help="--learner: also each switch alone at the shortest length")
    ap.add_argument("--point", nargs=3, metavar=("PATH", "TOKENS", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.point:
        path, tokens, model = args.point
        print(json.dumps(learner_point(Path(model), path, int(tokens))))
        return
    if args.learner:
        base, _ = build_qwen05_shape(Path(args.cache), args.vocab)
        rows = run_learner(base, sorted(args.tokens), args.components)
        if args.json:
            print(json.dumps({"model": str(base), "points": rows}, indent=2))
        else:
            print_learner(rows, base)
        return
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

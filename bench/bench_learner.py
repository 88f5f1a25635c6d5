"""Learner train step against a bare FSDP2 training loop on the same batch,
measured in the same invocation.

- ours: `LearnerGroup` as the default recipe (recipes/tiny-arith.yaml) sets
  it up: its `learner` section (2 FSDP2 ranks over gloo, float32, 1 thread
  per rank, AdamW lr 1e-4 with 5 warm-up steps, clip 1.0, 8192-token
  micro-batches) and `algo` section (cispo, token_mean), the `tiny-arith`
  base from `resolve_base`. Ray started as bench_sync.py starts it, no
  placement group. One step = the controller's call, `group.train_step(batch)`
  timed on the driver: `ray.put` of the batch, the RPC to both ranks,
  micro-batch planning and `select`, forward, float32 log-softmax gather,
  the CISPO loss (IS ratio capped at is_cap) with the batch's token weights,
  backward, the per-micro-batch metric sums, clip, AdamW + LR schedule step,
  the metrics all-reduce, the reply. Rank 0's own `time/train_step` (inside
  the actor, no put/RPC) is printed beside it. No weight push.
- baseline: the same 2 ranks as plain processes (`torch.multiprocessing`
  spawn, gloo `init_process_group` + 1-D device mesh; no Ray running while it
  is timed), the model loaded the same way (`from_pretrained` of the same
  folder, float32, `fully_shard` per decoder layer then the root, default
  MixedPrecisionPolicy), `torch.set_num_threads(threads_per_rank)`, the same
  AdamW settings, and each rank's micro-batches planned once, before timing,
  by `plan_microbatches` with the same token budget: the same token rows.
  One step: zero_grad, per micro-batch forward + log-softmax gather of the
  tokens + plain policy-gradient loss -sum(A * log pi * token_weight) (the
  batch's token_mean weights; CISPO with its IS weight left at 1) scaled by
  the world size as ours is, backward; clip; AdamW step. It leaves out: Ray
  (put, RPC, actor dispatch), per-step planning and row selection, the
  CISPO ratio/cap and the metric sums, the metrics all-reduce and the
  grad-norm read-back, the LR schedule (constant lr).

Timing: both sides run `--warmup` untimed steps, then `--steps` timed ones
(the baseline's split in two halves, before and after ours: A-B-A, so a
drifting background load hits both). A baseline step is timed on each rank
from a barrier to its optimizer step's end, and the slower rank counts. The
median step is the figure (min printed too). Target: ratio =
bare_s / ours_s >= 0.9.

    python bench/bench_learner.py [--prompts 16] [--samples 8] [--response-len 40] [--steps 10] [--warmup 2] [--json]

`--paths`: the learner's memory paths against the earlier path, same run,
at the tiny size (the tiny-arith base, 40-token answers) and the 24M size
(bench_e2e's `build_large`, 55-token answers), each on the recipe's learner
section (2 ranks, float32, 8192-token micro-batches) and a batch of
`--prompts` x `--samples` groups (8 x 8 in bench/RESULTS.md):
- old: `learner.packing=false learner.logprob_head=full` (right-padded rows,
  the whole vocabulary's logits; what the learner did before the switches)
- new: the recipe's defaults (packed micro-batches, chunked head; no
  activation checkpointing, which the CPU recipes leave off)
- padded: new with `learner.packing=false` (the packing comparison)
Each variant is its own LearnerGroup, all alive together; a round times
`--steps` steps of each in turn (after `--warmup`), and the figure per round
is the median of rank 0's `time/train_step`. Three rounds: the ratio
old_s / new_s (target >= 0.95) and packed tokens/s against padded are the
medians of the three rounds' ratios.

    python bench/bench_learner.py --paths [--prompts 8] [--steps 3] [--warmup 1] [--rounds 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import time


def make_batch(prompts: int, samples: int, response_len: int, vocab: int, algo, pad_id: int, seed: int = 0):
    """Random tokens shaped like tiny-arith's (prompt 8-12 tokens, response
    `response_len` +-12), rewards alternating within each group so every
    group survives the zero-variance filter: built as tests/rl/test_learner.py
    builds its batch."""
    from rl.algo.batch import build_train_batch
    from rollout.types import Group, Sample

    rng = random.Random(seed)
    groups = []
    for _ in range(prompts):
        prompt = [rng.randrange(2, vocab) for _ in range(rng.randrange(8, 13))]
        ss = []
        for j in range(samples):
            k = max(1, response_len + rng.randrange(-12, 13))
            ss.append(Sample(token_ids=[rng.randrange(2, vocab) for _ in range(k)],
                             logprobs=[-rng.uniform(0.05, 2.0) for _ in range(k)],
                             versions=[0] * k, finish_reason="stop", reward=float(j % 2)))
        groups.append(Group(prompt={}, prompt_ids=prompt, samples=ss))
    return build_train_batch(groups, algo, pad_id=pad_id)


def bare_micro_batches(batch, world: int, budget: int, pad_id: int) -> list[list[dict]]:
    """Per rank, its micro-batches as plain tensors (ours' plan; an empty one
    becomes a 2-token zero-weight row, as ours runs it)."""
    import torch

    from rl.algo.batch import plan_microbatches
    out = []
    for rows_per_micro in plan_microbatches(batch.lengths_b.tolist(), world, budget):
        micros = []
        for rows in rows_per_micro:
            if rows:
                sub = batch.select(rows)
                micros.append({"ids": sub.input_ids_bt, "adv": sub.advantages_b, "w": sub.token_weights_bt})
            else:
                micros.append({"ids": torch.full((1, 2), pad_id, dtype=torch.long), "adv": torch.zeros(1),
                               "w": torch.zeros(1, 2)})
        out.append(micros)
    return out


def bare_worker(rank: int, world: int, port: int, model_path: str, cfg: dict, micros: list[dict],
                cmd_q, res_q) -> None:
    """One bare rank: set up, then run `n` steps per ("run", n) command and
    send back each step's seconds."""
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(cfg["threads"])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,), mesh_dim_names=("dp_shard",))
    torch.manual_seed(cfg["seed"])
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh, mp_policy=MixedPrecisionPolicy())
    fully_shard(model, mesh=mesh, mp_policy=MixedPrecisionPolicy())
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=cfg["betas"], eps=cfg["eps"],
                            weight_decay=cfg["weight_decay"])
    temp = cfg["temperature"]

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        for mb in micros:
            ids = mb["ids"]
            logits = model(input_ids=ids).logits.float()[:, :-1] / temp
            lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            loss = -(mb["adv"][:, None] * lp * mb["w"][:, 1:]).sum()
            (loss * world).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()

    res_q.put(("ready", rank))
    while True:
        cmd, n = cmd_q.get()
        if cmd == "stop":
            break
        times = []
        for _ in range(n):
            dist.barrier()
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        res_q.put((rank, times))
    dist.destroy_process_group()


class BareLoop:
    def __init__(self, world: int, model_path: str, cfg: dict, micros: list[list[dict]]):
        import torch.multiprocessing as mp
        ctx = mp.get_context("spawn")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.res_q = ctx.Queue()
        self.cmd_qs = [ctx.Queue() for _ in range(world)]
        self.procs = [ctx.Process(target=bare_worker, daemon=True,
                                  args=(r, world, port, model_path, cfg, micros[r], self.cmd_qs[r], self.res_q))
                      for r in range(world)]
        for p in self.procs:
            p.start()
        for _ in range(world):
            self.res_q.get(timeout=600)

    def run(self, n: int) -> list[float]:
        """n steps; per step, the slower rank's seconds."""
        for q in self.cmd_qs:
            q.put(("run", n))
        per_rank = [self.res_q.get(timeout=3600)[1] for _ in self.cmd_qs]
        return [max(ts) for ts in zip(*per_rank)]

    def close(self) -> None:
        for q in self.cmd_qs:
            q.put(("stop", 0))
        for p in self.procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()


def run_ours(recipe, model_path: str, batch, warmup: int, steps: int) -> dict:
    import ray

    from rl.learner.group import LearnerGroup

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        group = LearnerGroup(recipe.learner, recipe.algo, model_path, recipe.rollout.temperature, recipe.run.seed,
                             deterministic=recipe.run.deterministic, fp32_lm_head=recipe.model.fp32_lm_head)
        try:
            wall, inner = [], []
            for i in range(warmup + steps):
                t0 = time.perf_counter()
                m = group.train_step(batch)
                dt = time.perf_counter() - t0
                if i >= warmup:
                    wall.append(dt)
                    inner.append(m["time/train_step"])
        finally:
            group.shutdown()
    finally:
        ray.shutdown()
    return {"wall": wall, "rank0": inner, "tokens_trained": m["train/tokens"]}


def summary(times: list[float], tokens: int) -> dict:
    med = statistics.median(times)
    return {"median_s": med, "min_s": min(times), "tokens_per_s": tokens / med, "steps": len(times)}


PATHS = {
    "old": {"packing": False, "logprob_head": "full"},
    "new": {},
    "padded": {"packing": False},
}


def time_paths(recipe, model_path: str, batch, warmup: int, steps: int, rounds: int) -> dict:
    """Per variant of PATHS, each round's median rank-0 step seconds."""
    import ray

    from rl.learner.group import LearnerGroup

    ray.init(num_cpus=16, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        groups = {name: LearnerGroup(recipe.learner.model_copy(update=upd), recipe.algo, model_path,
                                     recipe.rollout.temperature, recipe.run.seed)
                  for name, upd in PATHS.items()}
        out: dict[str, list[float]] = {name: [] for name in PATHS}
        try:
            for _ in range(rounds):
                for name, group in groups.items():
                    for _ in range(warmup):
                        group.train_step(batch)
                    out[name].append(statistics.median(group.train_step(batch)["time/train_step"]
                                                       for _ in range(steps)))
        finally:
            for group in groups.values():
                group.shutdown()
    finally:
        ray.shutdown()
    return out


def paths_main(args) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_e2e import build_large

    from rl.base.build import resolve_base
    from rl.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    results = {}
    for size, path, response_len in (("tiny", resolve_base(recipe.model.base), 40), ("24M", build_large(), 55)):
        conf = json.loads((Path(path) / "config.json").read_text())
        batch = make_batch(args.prompts, args.samples, response_len, conf["vocab_size"], recipe.algo,
                           conf.get("pad_token_id") or 0, seed=recipe.run.seed)
        times = time_paths(recipe, str(path), batch, args.warmup, args.steps, args.rounds)
        tokens = int(batch.lengths_b.sum())
        med = {k: statistics.median(v) for k, v in times.items()}

        def ratio(a: str, b: str) -> float:
            return statistics.median(x / y for x, y in zip(times[a], times[b]))
        results[size] = {"rows": batch.size, "tokens": tokens, "padded_cols": int(batch.input_ids_bt.shape[1]),
                         "rounds_s": times, "median_s": med,
                         "tokens_per_s": {k: tokens / v for k, v in med.items()},
                         "old_over_new": ratio("old", "new"), "packed_over_padded_tokens_s": ratio("padded", "new")}
    if args.json:
        print(json.dumps({"settings": vars(args), "paths": PATHS, "results": results}, indent=2))
        return
    print(f"learner step, rank 0 time/train_step; median of {args.steps} steps per round, {args.rounds} rounds; "
          f"{recipe.learner.ranks} ranks, {recipe.learner.micro_batch_tokens}-token micro-batches")
    for size, r in results.items():
        print(f"{size}: {r['rows']} rows, {r['tokens']} tokens (padded to {r['padded_cols']} columns)")
        for name in PATHS:
            print(f"  {name:<8}{r['median_s'][name]:>9.4f} s{r['tokens_per_s'][name]:>10.0f} tokens/s   {PATHS[name]}")
        print(f"  ratio old_s / new_s = {r['old_over_new']:.3f} (target >= 0.95); packed tokens/s / padded = "
              f"{r['packed_over_padded_tokens_s']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/tiny-arith.yaml")
    ap.add_argument("--prompts", type=int, default=16, help="prompt groups (recipe: rollout.prompts_per_step)")
    ap.add_argument("--samples", type=int, default=8, help="samples per prompt (rollout.samples_per_prompt)")
    ap.add_argument("--response-len", type=int, default=40, help="mean response tokens (+-12)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per side")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per side")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--paths", action="store_true", help="the memory paths against the earlier path (docstring)")
    ap.add_argument("--rounds", type=int, default=3, help="--paths: rounds of every variant")
    args = ap.parse_args()
    if args.paths:
        return paths_main(args)
    from pathlib import Path

    from rl.base.build import resolve_base
    from core.errors import UserError
    from rl.recipe import load_recipe

    try:
        recipe = load_recipe(args.recipe)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    lc = recipe.learner
    model_path = str(resolve_base(recipe.model.base))
    conf = json.loads((Path(model_path) / "config.json").read_text())
    pad_id = conf.get("pad_token_id") or 0
    batch = make_batch(args.prompts, args.samples, args.response_len, conf["vocab_size"], recipe.algo, pad_id,
                       seed=recipe.run.seed)
    tokens = int(batch.lengths_b.sum())
    cfg = {"threads": lc.threads_per_rank, "seed": recipe.run.seed, "lr": lc.lr, "betas": tuple(lc.betas),
           "eps": lc.adam_eps, "weight_decay": lc.weight_decay, "grad_clip": lc.grad_clip,
           "temperature": recipe.rollout.temperature}
    micros = bare_micro_batches(batch, lc.ranks, lc.micro_batch_tokens, pad_id)

    bare_t: list[float] = []
    bare = BareLoop(lc.ranks, model_path, cfg, micros)
    try:
        bare.run(args.warmup)
        bare_t += bare.run(args.steps // 2)
        ours = run_ours(recipe, model_path, batch, args.warmup, args.steps)
        bare_t += bare.run(args.steps - args.steps // 2)
    finally:
        bare.close()

    out = {
        "batch": {"rows": batch.size, "tokens": tokens, "tokens_trained": int(batch.mask_bt.sum()),
                  "padded_cols": int(batch.input_ids_bt.shape[1]),
                  "micro_batches_per_rank": len(micros[0]), "ranks": lc.ranks},
        "bare": summary(bare_t, tokens),
        "ours": summary(ours["wall"], tokens),
        "ours_rank0": summary(ours["rank0"], tokens),
        "raw_s": {"bare": bare_t, "ours": ours["wall"], "ours_rank0": ours["rank0"]},
        "settings": vars(args),
    }
    out["ratio"] = out["bare"]["median_s"] / out["ours"]["median_s"]
    out["ratio_rank0"] = out["bare"]["median_s"] / out["ours_rank0"]["median_s"]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    b = out["batch"]
    print(f"batch: {b['rows']} rows, {b['tokens']} tokens ({b['tokens_trained']} trained), padded to "
          f"{b['padded_cols']}; {b['ranks']} ranks x {b['micro_batches_per_rank']} micro-batch(es); "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    print(f"{'side':<28}{'median s':>10}{'min s':>10}{'tokens/s':>11}{'ratio':>8}")
    rows = [("bare FSDP2 loop", out["bare"], 1.0), ("ours: LearnerGroup (driver)", out["ours"], out["ratio"]),
            ("ours: rank 0 time/train_step", out["ours_rank0"], out["ratio_rank0"])]
    for name, s, ratio in rows:
        print(f"{name:<28}{s['median_s']:>10.4f}{s['min_s']:>10.4f}{s['tokens_per_s']:>11.0f}{ratio:>8.2f}")
    print(f"ratio bare_s / ours_s = {out['ratio']:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()

"""Rollout path throughput against raw vLLM `LLM.generate` on the same
prompts, sampling settings and engine settings, measured in the same
invocation. Target: ours >= 0.95 of raw, in generated tokens/s.

- prompts: the first `--prompts` of the recipe's training split in the order
  a run draws them (`PromptSampler(train, seed=run.seed).next_batch`), rendered
  by `rl.data.datasets.render_prompt` with the base's tokenizer, as the
  controller does; each sampled `--n` times at `--temperature`, `--max-tokens`
  (defaults: 64 x 8, the recipe's 1.0 and 64). Model: the recipe's base
  (`resolve_base`, tiny-arith by default).
- engine: the recipe's `rollout.engine` (tiny-arith.yaml: max_model_len 96,
  max_num_seqs 256, float32, enforce_eager, seed 0, kv_cache_gib 1,
  threads_bind auto), set up on both sides by rollout/engine.py's own
  `set_vllm_env` and `llm_kwargs` (the same environment, the same
  `LLM(...)` arguments).
- raw: one `LLM.generate` call for all prompts, one `SamplingParams(n,
  temperature, max_tokens, seed, logprobs=0)` per prompt, seeded as a job
  seeds that prompt's first sample (vLLM seeds child i with seed + i, as the
  job does): both sides sample the same tokens (checked: "same samples").
- ours: what a rollout worker does for a job, in-process and without Ray:
  `rollout.worker.RolloutWorker` (its engine thread, `rollout.engine.Engine`
  stepped one step at a time, `rollout.jobs.JobRun`/`Draft` bookkeeping,
  per-token version stamps), one `Job` as `rl.fleet.Fleet.submit` builds it
  (one worker). Before each pass the worker's version is bumped
  (`set_version`) and every stamp is checked against it. Left out: Ray's
  actor call and result transfer, and reward scoring: the stand-in hub takes
  each finished group's items (built, texts decoded) and scores nothing.

Each side runs in a subprocess of its own (one vLLM engine per process),
built one after the other; then the two take turns, one pass at a time (the
first pass of each untimed, then `--repeats` timed passes each, alternating
which side goes first), so that load from other processes falls on both. The
best (fastest) pass is reported, the median beside it. Tokens are all
generated tokens, EOS included; every pass samples the same tokens.

    python bench/bench_rollout.py [--prompts 64] [--n 8] [--repeats 3] [--recipe recipes/tiny-arith.yaml] [--set KEY=VALUE] [--json]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "BENCH_ROLLOUT_RESULT "
TARGET = 0.95


def _setup(args):
    """(recipe, model folder, prompt rows, prompt ids, the job's seed)."""
    from transformers import AutoTokenizer

    from rl.base.build import resolve_base
    from rl.data.datasets import load_splits, render_prompt
    from rl.data.sampler import PromptSampler
    from rl.fleet import job_seed
    from rl.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.set)
    model_path = str(resolve_base(recipe.model.base))
    tok = AutoTokenizer.from_pretrained(model_path)
    rows = PromptSampler(load_splits(recipe.data)[0], seed=recipe.run.seed, cfg=recipe.data).next_batch(args.prompts)
    ids = [render_prompt(tok, r["prompt"]) for r in rows]
    seed = job_seed(recipe.run.seed, "step0", 0)  # as Fleet.submit seeds job "step0", worker 0
    return recipe, model_path, rows, ids, seed


def _digest(samples: list[list[int]]) -> str:
    return hashlib.sha256(json.dumps(samples).encode()).hexdigest()[:16]


def build_raw(args):
    """The raw side: (build seconds, a pass function, a closer)."""
    recipe, model_path, _, ids, seed = _setup(args)
    from rollout.engine import resolve_device, llm_kwargs, set_vllm_env

    cfg = recipe.rollout.engine
    device = resolve_device(cfg)
    set_vllm_env(cfg, device)  # the engine's environment and LLM arguments, exactly
    from vllm import LLM, SamplingParams

    t0 = time.perf_counter()
    llm = LLM(**llm_kwargs(model_path, cfg, device))
    build_s = time.perf_counter() - t0
    prompts = [{"prompt_token_ids": p} for p in ids]
    params = [SamplingParams(n=args.n, temperature=args.temperature, max_tokens=args.max_tokens,
                             seed=seed + k * args.n, logprobs=0) for k in range(len(ids))]

    def one_pass(k: int):
        t = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        return time.perf_counter() - t, [list(c.token_ids) for o in outs for c in o.outputs]

    return build_s, one_pass, lambda: None


class _Hub:
    """Stands in for the reward hub: takes the group's items, scores nothing."""

    def score_groups_async(self, groups):
        return None


def build_ours(args):
    """Our side: (build seconds, a pass function, a closer)."""
    recipe, model_path, rows, ids, seed = _setup(args)
    from rollout.jobs import Job
    from rollout.types import RolloutBatch
    from rollout.worker import RolloutWorker

    class Worker(RolloutWorker):
        def _assemble(self, state):  # RolloutWorker._assemble without the hub's results (no Ray)
            run = state.run
            return RolloutBatch(step=state.job.step, groups=[run.group(p) for p in range(len(state.job.prompts))],
                                gen_seconds=time.perf_counter() - state.started)

    t0 = time.perf_counter()
    worker = Worker(model_path, recipe.rollout.engine, _Hub(), index=0)
    build_s = time.perf_counter() - t0
    ro = recipe.rollout

    def one_pass(k: int):
        worker.set_version(k + 1)  # a new policy version for every pass (no new weights)
        job = Job(job_id=f"step{k}/0", step=k, prompts=rows, prompt_ids=ids, n=args.n,
                  temperature=args.temperature, max_tokens=args.max_tokens, min_version=k + 1, priority=0,
                  seed=seed, interruption=ro.interruption, segment_tokens=ro.partial_segment_tokens)
        t = time.perf_counter()
        batch = worker.generate(job)
        took = time.perf_counter() - t
        bad = [s.versions for s in batch.samples if set(s.versions) != {k + 1}]
        if bad:
            raise RuntimeError(f"pass {k}: {len(bad)} samples stamped {bad[0][:4]}..., expected {k + 1}")
        return took, [list(s.token_ids) for s in batch.samples]

    return build_s, one_pass, worker.stop


def child(args) -> None:
    """One side in this process: build, say ready, then one pass per 'pass' line on stdin."""
    build_s, one_pass, close = (build_raw if args.side == "raw" else build_ours)(args)
    print(MARK + json.dumps({"build_s": build_s}), flush=True)
    try:
        for k, _ in enumerate(iter(sys.stdin.readline, "")):
            took, samples = one_pass(k)
            print(MARK + json.dumps({"s": took, "samples": len(samples), "tokens": sum(map(len, samples)),
                                     "digest": _digest(samples)}), flush=True)
    finally:
        close()


class Side:
    """A side's subprocess, driven one pass at a time."""

    def __init__(self, side: str, args):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--prompts", str(args.prompts),
               "--n", str(args.n), "--max-tokens", str(args.max_tokens), "--temperature", str(args.temperature),
               "--recipe", str(Path(args.recipe).resolve())] + [a for item in args.set for a in ("--set", item)]
        env = {**os.environ, "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.side, self.err = side, tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)
        self.build_s, self.passes = self._read()["build_s"], []

    def _read(self) -> dict:
        tail = []
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
            tail = (tail + [line])[-40:]
        self.proc.wait()
        self.err.seek(0)
        sys.stderr.write("".join(tail) + self.err.read()[-8000:])
        raise SystemExit(f"the {self.side} side failed (exit {self.proc.returncode})")

    def run_pass(self) -> None:
        self.proc.stdin.write("pass\n")
        self.proc.stdin.flush()
        self.passes.append(self._read())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)

    def summary(self) -> dict:
        times, last = [p["s"] for p in self.passes], self.passes[-1]
        warm, tokens = times[1:], last["tokens"]
        best, median = min(warm), statistics.median(warm)
        return {"samples": last["samples"], "tokens": tokens, "build_s": self.build_s, "cold_s": times[0],
                "warm_s": warm, "best_s": best, "median_s": median, "tok_per_s": tokens / best,
                "samples_per_s": last["samples"] / best, "median_tok_per_s": tokens / median,
                "same_work_every_pass": len({(p["tokens"], p["digest"]) for p in self.passes}) == 1,
                "digest": last["digest"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=8, help="samples per prompt")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes after one untimed pass; best is reported")
    ap.add_argument("--recipe", default="recipes/tiny-arith.yaml", help="model, data and rollout.engine come from it")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override, e.g. rollout.engine.threads_bind=nobind (repeatable)")
    ap.add_argument("--side", choices=("raw", "ours"), help=argparse.SUPPRESS)  # one side, in this process
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    if args.side:
        child(args)
        return
    from core.errors import UserError
    from rl.recipe import load_recipe
    try:
        load_recipe(args.recipe, args.set)  # a bad recipe or override is one line here, not two tracebacks
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    sides = [Side("raw", args)]  # built one after the other; each idles while the other runs
    try:
        sides.append(Side("ours", args))
        for k in range(args.repeats + 1):  # alternate which side goes first (load on a shared machine drifts)
            for side in sides[::1 if k % 2 == 0 else -1]:
                side.run_pass()
    finally:
        for side in sides:
            side.close()
    raw, ours = (side.summary() for side in sides)
    ratio = ours["tok_per_s"] / raw["tok_per_s"]
    out = {"raw": raw, "ours": ours, "ratio": ratio, "median_ratio": ours["median_tok_per_s"] / raw["median_tok_per_s"],
           "same_samples": raw["digest"] == ours["digest"], "target": TARGET, "settings": vars(args)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.prompts} prompts x {args.n} samples, T={args.temperature}, max_tokens {args.max_tokens}, "
          f"{args.recipe} {' '.join(args.set)}; best of {args.repeats} warm passes (after 1 untimed)")
    print(f"{'side':<34}{'tokens':>8}{'best s':>9}{'tok/s':>10}{'samples/s':>11}{'median s':>10}{'build s':>9}")
    for name, r in (("raw LLM.generate", raw), ("ours: RolloutWorker job (stamped)", ours)):
        print(f"{name:<34}{r['tokens']:>8}{r['best_s']:>9.3f}{r['tok_per_s']:>10.1f}{r['samples_per_s']:>11.1f}"
              f"{r['median_s']:>10.3f}{r['build_s']:>9.1f}")
    print(f"same samples on both sides: {'yes' if out['same_samples'] else 'NO'}; the same in every pass: "
          f"{'yes' if raw['same_work_every_pass'] and ours['same_work_every_pass'] else 'NO'}")
    print(f"ratio ours/raw (tokens/s, best): {ratio:.3f}  (median: {out['median_ratio']:.3f})  target >= {TARGET}"
          f"  -> {'met' if ratio >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()

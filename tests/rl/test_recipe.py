"""Recipes: layered YAML + dotted overrides into typed configs, one-line errors."""
import subprocess
import sys

import pytest

from rl.cli import main
from core.errors import UserError
from rl.recipe import load_recipe


def test_default_recipe_resolves():
    r = load_recipe("recipes/tiny-arith.yaml")
    assert r.rollout.workers == 1 and r.learner.ranks == 2
    assert r.algo.loss == "cispo"
    assert r.pipeline.max_off_policy_steps == 2


def test_overrides_and_layering(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("run: {steps: 7}\nalgo: {loss: grpo, clip_high: 0.28}\n")
    top = tmp_path / "top.yaml"
    top.write_text("extends: base.yaml\nalgo: {clip_low: 0.1}\n")
    r = load_recipe(top, ["run.steps=11", "learner.lr=3e-5", "pipeline.weight_transport=safetensors"])
    assert r.run.steps == 11
    assert r.algo.loss == "grpo" and r.algo.clip_high == 0.28 and r.algo.clip_low == 0.1
    assert r.learner.lr == pytest.approx(3e-5)
    assert r.pipeline.weight_transport == "safetensors"


@pytest.mark.parametrize("override, needle", [
    ("algo.lossx=1", "unknown key 'algo.lossx'"),
    ("learner.lr=abc", "key 'learner.lr'"),
    ("algo.loss=ppo", "key 'algo.loss'"),
    ("rollout.samples_per_prompt=1", "key 'rollout.samples_per_prompt'"),
    ("pipeline.max_off_policy_steps=-1", "key 'pipeline.max_off_policy_steps'"),
])
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(UserError) as err:
        load_recipe("recipes/tiny-arith.yaml", [override])
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: {steps: 3}\nrollout: {workerz: 2}\n")
    out = subprocess.run([sys.executable, "-m", "rl.cli", "launch", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == [f"asymptote: error: {bad}: unknown key 'rollout.workerz'"]
    out = subprocess.run([sys.executable, "-m", "rl.cli", "launch", str(tmp_path / "none.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "recipe file not found" in out.stderr and "Traceback" not in out.stderr


def test_dry_run_prints_config_and_plan(capsys):
    assert main(["launch", "recipes/tiny-arith.yaml", "learner.ranks=3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ranks: 3" in out
    assert "learner-rank     x3" in out and "rollout-worker   x1" in out


def test_config_modules_import_without_heavy_libraries():
    code = ("import sys, rl.recipe; bad = [m for m in ('torch', 'ray', 'vllm', 'transformers') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


RECIPES = sorted(p for p in __import__("pathlib").Path("recipes").rglob("*.yaml") if p.name != "base.yaml")


@pytest.mark.parametrize("path", RECIPES, ids=[str(p) for p in RECIPES])
def test_every_shipped_recipe_dry_runs_with_a_sensible_plan(path, capsys):
    assert main(["launch", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    r = load_recipe(path)
    if path.parent.name == "gpu":  # one GPU per rollout worker and per learner rank, nothing on CPU only
        assert r.rollout.gpus_per_worker == 1 and r.learner.gpus_per_rank == 1
        assert f"{r.rollout.workers + r.learner.ranks:g} GPU" in out
        assert r.rollout.engine.dtype == r.learner.dtype == "bfloat16" and r.model.fp32_lm_head
        assert r.rollout.prompts_per_step * r.rollout.samples_per_prompt == 768  # ScaleRL's batch
    else:  # fits the 2-core machine this project is tested on
        assert "0 GPU" in out and r.rollout.workers + r.learner.ranks * r.learner.cpus_per_rank <= 2
    assert r.algo.loss == {"grpo": "grpo", "dapo": "dapo", "dr-grpo": "dr_grpo", "gspo": "gspo",
                           "kimi-k1.5": "kimi", "long2short": "kimi", "tiny-arith": "cispo", "tiny-arith-genrm": "cispo",
                           "scalerl": "cispo", "smollm2-chain-sum": "cispo", "tiny-calc": "cispo"}[path.stem]


def test_empty_recipe_and_async_deterministic_are_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(UserError, match="the recipe is empty"):
        load_recipe(empty)
    with pytest.raises(UserError, match="run.deterministic needs pipeline.max_off_policy_steps=0"):
        load_recipe("recipes/tiny-arith.yaml", ["run.deterministic=true"])
    assert load_recipe("recipes/tiny-arith.yaml", ["run.deterministic=true",
                                                   "pipeline.max_off_policy_steps=0"]).run.deterministic

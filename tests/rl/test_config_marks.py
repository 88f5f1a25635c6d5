"""Config marks: every recipe key says whether a resume may change it and
whether it separates recipes, and `resume` and `compare` read those marks."""
import argparse

import pytest

from core.config_marks import covers, leaf_marks, marked_keys, undecided
from core.errors import UserError
from rl import launch
from rl.monitor.recipes import recipe_of
from rl.recipe import RESUMABLE, SEED_KEYS, Recipe, load_recipe, to_yaml


def test_every_recipe_key_answers_both_questions():
    assert undecided(Recipe) == []
    keys = [key for key, _ in leaf_marks(Recipe)]
    assert "rollout.engine.seed" in keys and "rewards.judge.genrm.logprobs" in keys  # nested and optional sections
    assert len(keys) == len(set(keys)) > 100


@pytest.mark.parametrize("key, resume, recipe", [
    ("run.steps", True, True), ("run.seed", False, False), ("run.name", True, False),
    ("algo.loss", False, True), ("learner.ranks", False, True), ("learner.micro_batch_tokens", True, True),
    ("rollout.resources.rollout_node", True, True), ("rollout.engine.seed", False, False),
    ("data.seed", False, False), ("monitor.bootstrap", True, False), ("cluster.address", True, False),
    ("pipeline.weight_transport", True, True), ("pipeline.max_off_policy_steps", False, True),
    ("rewards.judge", False, True), ("rewards.judge.replicas", True, True),
])
def test_known_keys(key, resume, recipe):
    assert covers(RESUMABLE, key) is resume
    assert covers(SEED_KEYS, key) is (not recipe)


def test_a_whole_section_is_one_prefix():
    assert "monitor." in RESUMABLE and "cluster." in SEED_KEYS
    assert not any(k.startswith("monitor.") and k != "monitor." for k in RESUMABLE)
    assert "monitor." in marked_keys(Recipe, resume=True, recipe=False)


def _run_dir(tmp_path):
    (tmp_path / "config.yaml").write_text(to_yaml(load_recipe("recipes/tiny-arith.yaml")))
    return tmp_path


def test_resume_refuses_algo_loss_and_accepts_run_steps(tmp_path, monkeypatch):
    run_dir = _run_dir(tmp_path)
    started = []
    monkeypatch.setattr(launch, "_run", lambda recipe, d: started.append(recipe) or 0)
    with pytest.raises(UserError, match="'algo.loss' changed would corrupt the run"):
        launch.resume(argparse.Namespace(run_dir=str(run_dir), overrides=["algo.loss=grpo"], address=None))
    assert started == []
    overrides = ["run.steps=500", "monitor.bootstrap=0", "rollout.resources.rollout_node=1"]
    assert launch.resume(argparse.Namespace(run_dir=str(run_dir), overrides=overrides, address=None)) == 0
    assert started[0].run.steps == 500 and started[0].rollout.resources == {"rollout_node": 1}


def test_seed_keys_leave_seeds_and_bookkeeping_out_of_the_recipe(tmp_path):
    a = recipe_of(_run_dir(tmp_path))
    assert "algo.loss" in a and "run.steps" in a
    assert not {"run.seed", "data.seed", "rollout.engine.seed", "run.name", "monitor.bootstrap"} & a.keys()

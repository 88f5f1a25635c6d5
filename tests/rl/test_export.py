"""`asymptote export hf` on what a real run wrote: the folder loads in
transformers and vLLM, holds the checkpoint's weights bit for bit, and greedy
decoding from it (transformers, vLLM) gives the learner's own greedy text.

Everything here reads only the `finished_run` fixture (tests/rl/conftest.py):
the real run that was SIGKILLed twice and resumed to its end.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rl.checkpoint import CheckpointStore
from rl.cli import main
from tests.rl.conftest import greedy_three_ways

pytestmark = pytest.mark.slow


N_PROMPTS = 4


def _checkpoints(run_dir: Path):
    store = CheckpointStore(run_dir)
    return [store.load(p) for p in store.all() if store.problem(p) is None]


def _checkpoint_model(learner_dir: Path, tmp_path: Path) -> dict[str, torch.Tensor]:
    """The model entries of a DCP checkpoint, read by DCP's own whole-file
    converter (a different code path from the exporter's)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(learner_dir, tmp_path / "full.pt")
    return torch.load(tmp_path / "full.pt", weights_only=False)["model"]


def _safetensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _export(*args: str) -> int:
    return main(["export", "hf", *map(str, args)])


def _assert_matches_checkpoint(saved: dict, ckpt_model: dict) -> None:
    """Every saved tensor is the checkpoint's bit for bit; a checkpoint entry
    left out of the file is the tied head, equal to the embedding."""
    assert saved, "no tensors saved"
    for name, t in saved.items():
        assert t.dtype == ckpt_model[name].dtype, name
        assert torch.equal(t, ckpt_model[name]), name
    left_out = set(ckpt_model) - set(saved)
    assert left_out <= {"lm_head.weight"}, left_out
    if left_out:
        assert torch.equal(ckpt_model["lm_head.weight"], saved["model.embed_tokens.weight"])


@pytest.fixture(scope="module")
def exported(finished_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "hf"
    return _export(finished_run, out), out


def test_export_writes_a_folder_transformers_loads(exported, finished_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rc, out = exported
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "export.json"} <= names
    info = json.loads((out / "export.json").read_text())
    latest = _checkpoints(finished_run)[-1]
    assert info["step"] == latest.step
    assert Path(info["checkpoint"]) == latest.path.resolve()
    assert Path(info["run_dir"]) == finished_run.resolve()
    assert info["recipe"] == "tiny-arith"

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok.eos_token_id and gen["pad_token_id"] == tok.pad_token_id
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_export_holds_the_checkpoint_weights_bit_for_bit(exported, finished_run, tmp_path):
    from safetensors.torch import load_file

    from rl.base.build import resolve_base
    from rl.export.hf import read_run_config

    _, out = exported
    ckpt_model = _checkpoint_model(_checkpoints(finished_run)[-1].learner, tmp_path)
    assert "lm_head.weight" in ckpt_model  # the learner writes the tied head under both names
    saved = _safetensors(out)
    _assert_matches_checkpoint(saved, ckpt_model)
    base = load_file(resolve_base(read_run_config(finished_run)["model"]["base"]) / "model.safetensors")
    assert any(not torch.equal(saved[k], base[k]) for k in saved), "the export is the untrained base"


def test_greedy_text_of_learner_transformers_and_vllm_agree(exported, finished_run, ray_local):
    from transformers import AutoTokenizer

    from rl.data.arith import validation_prompts
    from rl.data.datasets import render_prompt
    from rl.recipe import load_recipe

    _, out = exported
    recipe = load_recipe(finished_run / "config.yaml")
    tok = AutoTokenizer.from_pretrained(out)
    prompts = [render_prompt(tok, p["prompt"]) for p in validation_prompts(N_PROMPTS)]
    max_new = recipe.rollout.max_new_tokens

    learner, hf, vllm = greedy_three_ways(recipe, _checkpoints(finished_run)[-1].learner, out, prompts, max_new,
                                          tok.eos_token_id)
    assert all(learner), learner
    assert hf == learner
    assert vllm == learner
    texts = [tok.decode(ids, skip_special_tokens=True) for ids in learner]
    assert any("\\boxed{" in t for t in texts), texts  # real answers, not noise


def test_step_picks_that_checkpoint(finished_run, tmp_path):
    ckpts = _checkpoints(finished_run)
    first = ckpts[0]
    out = tmp_path / "hf"
    assert _export(finished_run, "--step", first.step, out) == 0
    assert json.loads((out / "export.json").read_text())["step"] == first.step
    saved = _safetensors(out)
    _assert_matches_checkpoint(saved, _checkpoint_model(first.learner, tmp_path))
    if len(ckpts) > 1:  # and not the newest one
        newest = _checkpoint_model(ckpts[-1].learner, tmp_path)
        assert any(not torch.equal(t, newest[k]) for k, t in saved.items())


def test_force_replaces_a_non_empty_out_dir(finished_run, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "old.txt").write_text("x")
    assert _export(finished_run, out, "--force") == 0
    assert not (out / "old.txt").exists() and (out / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def _one_line_error(capsys, rc: int, *expected: str) -> None:
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("asymptote: error: ") and "\n" not in err, err
    for word in expected:
        assert word in err, err


def test_errors_are_one_line(finished_run, tmp_path, capsys):
    out = tmp_path / "out"
    _one_line_error(capsys, _export(tmp_path / "nowhere", out), "not a run directory")
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, _export(tmp_path / "empty", out), "not a run directory", "config.yaml")

    missing = max(c.step for c in _checkpoints(finished_run)) + 1000
    _one_line_error(capsys, _export(finished_run, "--step", missing, out), f"no checkpoint of step {missing}")

    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _one_line_error(capsys, _export(finished_run, out), "not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    _one_line_error(capsys, _export(finished_run, finished_run.parent, "--force"), "--force would delete it")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_damaged_checkpoints_are_skipped_and_none_left_is_refused(finished_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    ckpts = CheckpointStore(run).all()
    (ckpts[-1] / "manifest.json").unlink()  # as a writer killed before sealing leaves it
    if len(ckpts) > 1:
        assert _export(run, tmp_path / "older") == 0
        assert json.loads((tmp_path / "older" / "export.json").read_text())["step"] == _checkpoints(run)[-1].step
        assert f"{ckpts[-1]} skipped: no manifest.json" in capsys.readouterr().err
    for ckpt in ckpts[:-1]:
        (ckpt / "manifest.json").unlink()
    _one_line_error(capsys, _export(run, tmp_path / "out"), "no valid checkpoint", "no manifest.json")


# The learner's checkpoints always hold the tied head under both names; the two
# cases below (head absent, head differing) are derived from the real checkpoint
# because no run can write them.
def _rewrite_model(src: Path, dst: Path, change) -> Path:
    import torch.distributed.checkpoint as dcp

    model = _checkpoint_model(src, dst.parent)
    change(model)
    dcp.save({"model": model}, checkpoint_id=str(dst), no_dist=True)
    return dst


def test_a_checkpoint_without_the_tied_head_exports_the_same_weights(exported, finished_run, tmp_path):
    from rl.base.build import resolve_base
    from rl.export.hf import load_policy, read_run_config

    _, out = exported
    learner = _rewrite_model(_checkpoints(finished_run)[-1].learner, tmp_path / "learner",
                             lambda m: m.pop("lm_head.weight"))
    model = load_policy(learner, resolve_base(read_run_config(finished_run)["model"]["base"]))
    saved = _safetensors(out)
    state = model.state_dict()
    assert all(torch.equal(state[k], t) for k, t in saved.items())
    assert torch.equal(model.lm_head.weight, saved["model.embed_tokens.weight"])


def test_a_tied_head_that_differs_from_the_embedding_is_refused(finished_run, tmp_path):
    from rl.base.build import resolve_base
    from core.errors import UserError
    from rl.export.hf import load_policy, read_run_config

    def perturb(m):
        m["lm_head.weight"] = m["lm_head.weight"] + 1.0

    learner = _rewrite_model(_checkpoints(finished_run)[-1].learner, tmp_path / "learner", perturb)
    with pytest.raises(UserError, match="differs from"):
        load_policy(learner, resolve_base(read_run_config(finished_run)["model"]["base"]))

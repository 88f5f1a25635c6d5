"""The memory plan (rl/learner/memory_plan.py) and its part of
`asymptote launch --dry-run` (rl/dry_run_memory.py): parameter counts against
published ones, the KV-cache fit against a hand computation, and the dry run's
verdicts through the real command. No torch."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from core.config_marks import covers
from rl.cli import main
from rl.learner.memory_plan import (
    C_F, C_H, C_KV, C_Q, ENGINE_RESERVE_GIB, GIB, K_CHUNK, ModelShape, engine_plan, kv_fit, learner_parts,
)
from rl.recipe import RESUMABLE, load_recipe

ROOT = Path(__file__).resolve().parents[2]
QWEN3_8B = ROOT / "recipes/gpu/shapes/Qwen3-8B/config.json"
# Qwen/Qwen2.5-0.5B's config.json, the keys the plan reads (qkv biases come with model_type qwen2)
QWEN25_05B = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
              "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
              "tie_word_embeddings": True}
GRPO = ["launch", "recipes/gpu/grpo.yaml", "--dry-run"]
CKPT = "learner.activation_checkpointing=true"  # as recipes/gpu/base.yaml sets it (off: 221 GiB a rank)


def qwen3_8b() -> ModelShape:
    return ModelShape.from_config(json.loads(QWEN3_8B.read_text()))


def test_parameter_counts_match_the_published_models():
    assert ModelShape.from_config(QWEN25_05B).total_params == 494_032_768  # tied, qkv biases
    shape = qwen3_8b()
    assert shape.total_params == 8_190_735_360  # untied, q_norm/k_norm
    assert shape.params()["LM head"] == shape.params()["embedding"] == 151936 * 4096
    assert shape.root_params == 2 * 151936 * 4096 + 4096


def test_the_count_of_a_committed_base_equals_its_safetensors():
    folder = next((ROOT / "rl/base/weights").glob("tiny-arith-*"))
    raw = (folder / "model.safetensors").read_bytes()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    stored = sum(_prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    assert ModelShape.from_config(json.loads((folder / "config.json").read_text())).total_params == stored


def _prod(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def test_kv_cache_fit_against_a_hand_computation():
    engine = load_recipe("recipes/gpu/base.yaml").rollout.engine  # bfloat16, 0.85, 16384, 256
    weights, kv, fit = kv_fit(qwen3_8b(), engine, 80)
    assert weights == 8_190_735_360 * 2
    budget = 80 * 0.85 * GIB  # 68 GiB
    assert kv == budget - weights - ENGINE_RESERVE_GIB * GIB
    assert fit.bytes_per_token == 2 * 36 * 8 * 128 * 2 == 147_456  # K and V, 36 layers, 8 KV heads
    assert fit.tokens == int(kv // 147_456)
    assert fit.full_sequences == fit.tokens // 16384 and fit.concurrency == min(fit.full_sequences, 256)
    if ENGINE_RESERVE_GIB == 2.0:  # the numbers docs/performance.md quotes
        assert (fit.tokens, fit.full_sequences) == (369_503, 22)
    plan = engine_plan(qwen3_8b(), engine, 80)
    assert plan.level == "warn" and any(f"{fit.concurrency} sequences of max_model_len fit" in n for n in plan.notes)


def test_learner_parts_follow_the_formula():
    recipe = load_recipe("recipes/gpu/base.yaml", [CKPT])
    shape, p = qwen3_8b(), 8_190_735_360
    parts = dict(learner_parts(shape, recipe.learner, fp32_lm_head=True)[0])
    assert parts["master parameters (float32 shard)"] == parts["gradients (float32 shard)"] == 4 * p / 8
    assert parts["AdamW state (float32 shard)"] == 8 * p / 8
    assert parts["unsharded parameters (bfloat16: root + 2 layers)"] == 2 * (shape.root_params + 2 * shape.layer_total)
    assert parts["activations (layer inputs)"] == 32768 * 36 * 4096 * 2
    assert parts["LM head (1024-token chunk)"] == K_CHUNK * 1024 * 151936 * 4
    assert parts["float32 head copy + gradient"] == 2 * 151936 * 4096 * 4
    assert parts["root gradient, unsharded, + one of its size (float32)"] == 2 * 151936 * 4096 * 4
    assert not any(n.startswith("optimizer step") for n in parts)  # the backward's transients are larger
    device, host = learner_parts(shape, recipe.learner.model_copy(update={"offload": True}), fp32_lm_head=True)
    assert sum(b for _, b in host) == 16 * p / 8 and not any("shard)" in n for n, _ in device)


def test_the_optimizer_step_sets_the_peak_when_its_temporaries_exceed_the_backward_s():
    """One rank, short micro-batches: foreach AdamW's float32 temporary of
    every shard (4 P) outweighs the backward's transients, so the rank's
    peak is the step's, 16 P of state and gradients plus 4 P; not on CPU,
    where the per-parameter step makes two of the head's size."""
    recipe = load_recipe("recipes/gpu/base.yaml", [CKPT])
    learner = recipe.learner.model_copy(update={"ranks": 1, "micro_batch_tokens": 256})
    shape, p = qwen3_8b(), 8_190_735_360
    parts = learner_parts(shape, learner, fp32_lm_head=True)[0]
    assert parts[-1][0] == "optimizer step's temporaries beyond the backward's"
    assert sum(b for _, b in parts) == pytest.approx(20 * p)
    cpu = learner_parts(shape, learner, fp32_lm_head=True, on_gpu=False)[0]
    assert not any(n.startswith("optimizer step") for n, _ in cpu)


def test_grpo_fits_an_h100_and_prints_the_plan(capsys):
    assert main(GRPO + [CKPT, "--gpu-memory-gb", "80"]) == 0
    out = capsys.readouterr().out
    assert "# memory plan" in out and "8,190,735,360 parameters" in out
    assert "fits H100 80 GB: " in out and "of 80.0 GiB" in out
    assert "# rollout engine" in out and "sequences of max_model_len 16384 at once (max_num_seqs 256)" in out


@pytest.mark.parametrize("path", sorted((ROOT / "recipes/gpu").glob("*.yaml")), ids=lambda p: p.name)
@pytest.mark.parametrize("gib", ["80", "141"])
def test_every_gpu_recipe_fits_with_checkpointing(path, gib, capsys):
    assert main(["launch", str(path), CKPT, "--dry-run", "--gpu-memory-gb", gib]) == 0
    assert "does not fit" not in capsys.readouterr().out


def test_a_small_gpu_is_refused_in_one_line_naming_memory(capsys):
    assert main(GRPO + ["--gpu-memory-gb", "16"]) == 2
    captured = capsys.readouterr()
    assert "# learner rank" in captured.out  # the plan is printed before the refusal
    assert captured.err.count("\n") == 1 and "error: memory: a learner rank needs" in captured.err
    assert "16.0 GiB" in captured.err and "learner.offload=true" in captured.err  # the sharded state is largest
    # without checkpointing the activations are the largest part, and the hint names the switch
    assert main(GRPO + ["learner.activation_checkpointing=false", "--gpu-memory-gb", "80"]) == 2
    assert "activation_checkpointing" in capsys.readouterr().err


def test_the_recipe_field_is_read_and_the_flag_overrides_it(capsys):
    assert main(GRPO + [CKPT, "cluster.gpu_memory_gb=16"]) == 2
    assert "error: memory:" in capsys.readouterr().err
    assert main(GRPO + [CKPT, "cluster.gpu_memory_gb=16", "--gpu-memory-gb", "141"]) == 0
    assert "fits H200 141 GB" in capsys.readouterr().out
    assert covers(RESUMABLE, "cluster.gpu_memory_gb")  # where the cluster is, not what is learned


def test_an_engine_without_room_for_one_sequence_is_refused(capsys):
    # 80 GiB x 0.23 = 18.4 GiB: the weights (15.3) and the reserve leave a cache of < 16384 tokens
    assert main(GRPO + [CKPT, "rollout.engine.gpu_memory_utilization=0.23", "--gpu-memory-gb", "80"]) == 2
    assert "less than one sequence of rollout.engine.max_model_len 16384" in capsys.readouterr().err
    assert main(GRPO + [CKPT, "rollout.engine.gpu_memory_utilization=0.2", "--gpu-memory-gb", "80"]) == 2
    assert "error: memory: a rollout engine's weights + reserve take" in capsys.readouterr().err


def test_no_config_is_one_line_and_the_dry_run_goes_on(capsys):
    assert main(GRPO + ["model.base=/models/NoSuchModel", "--gpu-memory-gb", "80"]) == 0
    out = capsys.readouterr().out
    assert "# memory: not planned (no config.json for /models/NoSuchModel; pass --model-config PATH)" in out


def test_a_missing_model_config_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "none" / "config.json"
    res = subprocess.run([sys.executable, "-m", "rl.cli", *GRPO, "--model-config", str(missing)],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"asymptote: error: --model-config {missing}: no such file"]


def test_model_config_overrides_the_shape(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_05B))
    assert main(GRPO + ["--model-config", str(tmp_path), "--gpu-memory-gb", "80"]) == 0
    assert "494,032,768 parameters" in capsys.readouterr().out


def test_a_cpu_recipe_over_the_host_only_warns(capsys):
    assert main(["launch", "recipes/tiny-arith.yaml", "learner.micro_batch_tokens=100000000", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# this machine (roles without GPUs)" in out and "does not fit this machine's MemTotal" in out


def test_the_plan_imports_without_heavy_libraries():
    code = ("import sys, rl.learner.memory_plan, rl.dry_run_memory; "
            "print(','.join(m for m in ('torch', 'ray', 'vllm', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_sequence_longer_than_the_budget_sets_the_micro_batch():
    recipe = load_recipe("recipes/gpu/base.yaml", ["learner.micro_batch_tokens=8192",
                                                    "learner.activation_checkpointing=false"])
    parts = dict(learner_parts(qwen3_8b(), recipe.learner, True, longest_sequence=16384)[0])
    a_layer = 2 * (5 * 4096 + 4 * 12288 + 4 * 4096 + 3 * 1024)  # the constants as first counted
    if (C_H, C_F, C_Q, C_KV) == (5, 4, 4, 3):
        assert parts["activations (36 layers)"] == 16384 * 36 * a_layer
    assert parts["activations (36 layers)"] == 16384 * 36 * qwen3_8b().layer_activation_bytes(2)


def test_a_builtin_base_that_is_not_built_is_not_built_by_a_dry_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASYMPTOTE_CACHE", str(tmp_path))  # an empty cache: tiny-arith-long is not committed
    assert main(["launch", "recipes/long2short.yaml", "--dry-run"]) == 0
    assert "# memory: not planned (base tiny-arith-long is not built yet" in capsys.readouterr().out
    assert not any(tmp_path.rglob("config.json"))

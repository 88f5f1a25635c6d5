"""Build a Qwen2-architecture causal LM from an `ArchConfig` (random init)."""
from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rl.base.config import ArchConfig
from rl.base.tokenizer import VOCAB_SIZE


# ArchConfig field -> the Qwen2Config argument it sets.
QWEN2_NAMES = {
    "hidden_size": "hidden_size",
    "ffn_size": "intermediate_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "num_kv_heads": "num_key_value_heads",
    "max_positions": "max_position_embeddings",
    "tie_embeddings": "tie_word_embeddings",
}


def qwen2_config(arch: ArchConfig, tokenizer) -> Qwen2Config:
    """The Hugging Face config of `arch`, with the tokenizer's pad token and
    its EOS as both BOS and EOS (the chat template writes no BOS)."""
    shape = {hf: getattr(arch, ours) for ours, hf in QWEN2_NAMES.items()}
    return Qwen2Config(vocab_size=VOCAB_SIZE, rope_theta=10000.0, torch_dtype="float32",
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                       bos_token_id=tokenizer.eos_token_id, **shape)


def build_model(arch: ArchConfig, tokenizer, seed: int = 0) -> Qwen2ForCausalLM:
    """A freshly initialised model; the same seed gives the same weights."""
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(qwen2_config(arch, tokenizer))

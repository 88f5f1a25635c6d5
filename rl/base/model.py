"""Build a Qwen2-architecture causal LM from an `ArchConfig` (random init)."""
from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rl.base.config import ArchConfig
from rl.base.tokenizer import VOCAB_SIZE


def qwen2_config(arch: ArchConfig, tokenizer) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.ffn_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads,
        max_position_embeddings=arch.max_positions,
        tie_word_embeddings=arch.tie_embeddings,
        rope_theta=10000.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        torch_dtype="float32",
    )


def build_model(arch: ArchConfig, tokenizer, seed: int = 0) -> Qwen2ForCausalLM:
    """A freshly initialised model; the same seed gives the same weights."""
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(qwen2_config(arch, tokenizer))

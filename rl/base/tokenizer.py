"""A character-level tokenizer for the synthetic tasks, saved in the standard
Hugging Face format so that transformers, TRL and vLLM load it like any other.

Multi-character markers (`<think>`, `</think>`, `\\boxed{`, the chat roles)
are single tokens. The chat template renders
`<|user|>PROMPT<|assistant|>RESPONSE<|end|>`; `<|end|>` is the EOS token.
"""
from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<|pad|>", "<|end|>", "<|unk|>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
THINK_OPEN, THINK_CLOSE, BOXED = "<think>", "</think>", "\\boxed{"
SPECIAL = [PAD, EOS, UNK, USER, ASSISTANT]
MARKERS = [THINK_OPEN, THINK_CLOSE, BOXED]
CHARS = list(string.digits + "+-*=,.:;()[]{}/\\ ?" + string.ascii_lowercase)
VOCAB_SIZE = 64  # padded: a round size is friendlier to kernels

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}" + USER + "{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}" + ASSISTANT + "{{ m['content'] }}" + EOS +
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Deterministically build the tokenizer (same ids on every machine)."""
    tokens = SPECIAL + MARKERS + CHARS
    assert len(tokens) <= VOCAB_SIZE
    vocab = {tok: i for i, tok in enumerate(tokens)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Every character is its own piece; added tokens (markers) match first.
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD, eos_token=EOS, unk_token=UNK,
        additional_special_tokens=[USER, ASSISTANT],
        clean_up_tokenization_spaces=False,
    )
    tok.add_tokens(MARKERS)  # already in the vocab: marks them as whole pieces
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok

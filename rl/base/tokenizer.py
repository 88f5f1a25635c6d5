"""A character-level tokenizer for the synthetic tasks, saved in the standard
Hugging Face format so that transformers, TRL and vLLM load it like any other.

Multi-character markers (`<think>`, `</think>`, `\\boxed{`, the chat roles)
are single tokens. The chat template renders
`<|user|>PROMPT<|assistant|>RESPONSE<|end|>`; `<|end|>` is the EOS token.

Why byte-level BPE for a character vocabulary: our bases are Qwen2 models,
and for a qwen2 config transformers 5's `AutoTokenizer` (so vLLM and TRL)
always builds `Qwen2Tokenizer`, a byte-level BPE that takes only the vocab,
merges and added tokens from `tokenizer.json`. A vocabulary spelled in the
byte-level alphabet (space is "Ġ", newline "Ċ") with no merges reads the same
ids through that class as through this one; a WordLevel vocabulary lost every
space and newline there. A character outside the vocabulary is dropped (the
byte-level model has no unknown token), so callers that must spell a text
check `decode(encode(text)) == text`.
"""
from __future__ import annotations

import string
from typing import Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from rl.data.markers import BOXED, THINK_CLOSE, THINK_OPEN

PAD, EOS, UNK = "<|pad|>", "<|end|>", "<|unk|>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
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

_BYTE = bytes_to_unicode()


def char_tokenizer(special: Sequence[str], pieces: Sequence[str], chars: Sequence[str], vocab_size: int,
                   chat_template: str, extra_special: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """Ids in the order special + pieces + chars; `pieces` are multi-character
    tokens matched before the characters; `extra_special` (a subset of
    `special` beyond pad/eos/unk) are skipped when decoding."""
    tokens = [*special, *pieces, *chars]
    assert len(tokens) <= vocab_size and len(set(tokens)) == len(tokens)
    whole = set(special) | set(pieces)
    vocab = {t if t in whole else "".join(_BYTE[b] for b in t.encode()): i for i, t in enumerate(tokens)}
    # The pipeline Qwen2Tokenizer rebuilds (NFC, byte-level) with no merges: one token per character.
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None, fuse_unk=False, byte_fallback=False))
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD, eos_token=EOS, unk_token=UNK,
        additional_special_tokens=list(extra_special),
        clean_up_tokenization_spaces=False,
    )
    tok.add_tokens(list(pieces))  # already in the vocab: marks them as whole pieces
    tok.chat_template = chat_template
    tok.padding_side = "left"
    return tok


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Deterministically build the tokenizer (same ids on every machine)."""
    return char_tokenizer(SPECIAL, MARKERS, CHARS, VOCAB_SIZE, CHAT_TEMPLATE, extra_special=[USER, ASSISTANT])

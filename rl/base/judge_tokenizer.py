"""The tiny judge's tokenizer: character-level over printable ASCII (and
newline), plus the special tokens and the fixed phrases of the judge format,
saved in the standard Hugging Face layout so transformers, TRL and vLLM load it.

Why not the base's tokenizer: its 24 characters cannot spell "Yes", "No" or
the English of the judge prompts. Why phrases as tokens: every fixed string of
`rewards.judge_format` (the headers, the verification question, the GRM
instruction, " Yes", " No", the truncation marker) is one token, so the
prompt costs the tiny model a few positions instead of a hundred characters,
and " Yes"/" No" are single first tokens, as the GenRM P(Yes) read-out needs.
Free text (a question, a response, the judge's own working) is spelled one
character per token. The chat template renders a user message verbatim, so a
chat-style call sees the same tokens as the raw prompt the judge was trained on.
"""
from __future__ import annotations

import string

from transformers import PreTrainedTokenizerFast

from rewards import judge_format as jf
from rl.base.tokenizer import BOXED, EOS, PAD, THINK_CLOSE, THINK_OPEN, UNK, char_tokenizer

SPECIAL = [PAD, EOS, UNK]
# The tiny judge's one principle (a GRM judge writes its principles first).
PRINCIPLE = "The final boxed answer must equal the true sum; the working does not count."
PHRASES = [THINK_OPEN, THINK_CLOSE, BOXED, jf.QUESTION_HEADER, jf.RESPONSE_HEADER,
           jf.VERIFY_QUESTION, jf.YES_TEXT, jf.NO_TEXT, jf.TRUNCATION_MARKER,
           jf.GRM_INSTRUCTION, jf.PRINCIPLES, jf.ANALYSIS, jf.SCORES, PRINCIPLE,
           "[Response ", "no answer", "right", "wrong"]
CHARS = [c for c in string.printable if c not in "\t\r\x0b\x0c"]  # 95 printable + "\n"
VOCAB_SIZE = 128  # padded to a round size

CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def build_judge_tokenizer() -> PreTrainedTokenizerFast:
    """Deterministically build the judge tokenizer (same ids on every machine)."""
    return char_tokenizer(SPECIAL, PHRASES, CHARS, VOCAB_SIZE, CHAT_TEMPLATE)


def load_judge_tokenizer(path) -> PreTrainedTokenizerFast:
    """The saved judge tokenizer as vLLM and TRL load it (`AutoTokenizer`,
    which builds `Qwen2Tokenizer` for this config; the byte-level vocabulary
    of `rl.base.tokenizer.char_tokenizer` gives it the ids built here)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    return tok

"""The text contract between a judge model and the reward hub that serves it.

One module, standard library only, imported by both sides: the judge builder
(`rl/base/judge_build.py`, which trains the project's tiny judge on exactly
these strings) and the serving side (`rewards/judge/`, which renders prompts
for a judge engine and reads its completions). A real judge (any instruct
model) is given the same text.

Two formats:

- **GenRM verification** (`verify_prompt`). The prompt ends with
  `VERIFY_QUESTION` ("Is the answer correct (Yes/No)?"). The judge's
  completion starts with `YES_TEXT` (" Yes") or `NO_TEXT` (" No"), leading
  space included, and nothing else is needed after it. The score is P(Yes),
  read from the **first generated token**: in the tiny judge's tokenizer
  " Yes" and " No" are each one token, so the first token *is* " Yes" or
  " No"; in BPE tokenizers of the Qwen/Llama families they are one token too
  (a leading-space word). `first_token_ids(tokenizer)` returns both ids and
  fails loudly when a tokenizer splits either word.
- **DeepSeek-GRM pointwise** (`grm_prompt`). The judge writes
  "Principles: ...", "Analysis: ..." and, last, "Scores: \\boxed{s1, s2, ...}"
  with one integer score from `SCORE_MIN` to `SCORE_MAX` per response, in the
  order given. `parse_grm_scores` reads them back. The tiny judge is trained
  for one and two responses; its scores are 10 (the boxed answer is right),
  2 (a wrong boxed answer), 1 (no final answer at all).

Both prompts are plain text fed to the engine as is (no chat template); the
tiny judge's tokenizer carries a chat template that renders a user message
verbatim, so a chat-style call gives the same tokens.

Responses longer than `MAX_RESPONSE_CHARS` are cut by `truncate_response`,
which appends `TRUNCATION_MARKER`; the tiny judge is trained to see the
marker (and to answer No when the final answer was cut away).
"""
from __future__ import annotations

import re

# Shared by both formats.
QUESTION_HEADER = "Question: "
RESPONSE_HEADER = "Response: "
MAX_RESPONSE_CHARS = 160
TRUNCATION_MARKER = " [truncated]"

# GenRM verification.
VERIFY_QUESTION = "Is the answer correct (Yes/No)?"
YES_TEXT = " Yes"
NO_TEXT = " No"

# DeepSeek-GRM pointwise.
GRM_INSTRUCTION = ("Rate each response from 1 to 10. Write Principles:, then Analysis:, "
                   "then Scores: \\boxed{s1, s2, ...} with one integer per response, in order.")
PRINCIPLES = "Principles:"
ANALYSIS = "Analysis:"
SCORES = "Scores:"
SCORE_MIN, SCORE_MAX = 1, 10

_VERDICT_RE = re.compile(r"\s*(Yes|No)\b")
_SCORES_RE = re.compile(r"Scores:\s*\\boxed\{([^{}]*)\}")


def truncate_response(text: str, limit: int = MAX_RESPONSE_CHARS) -> str:
    """`text` unchanged when at most `limit` characters long, else its first
    `limit` characters followed by `TRUNCATION_MARKER`."""
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER


def response_header(index: int) -> str:
    """The line that opens response `index` (1-based) in a GRM prompt."""
    return f"[Response {index}]\n"


def verify_prompt(question: str, response: str, limit: int = MAX_RESPONSE_CHARS) -> str:
    """GenRM verification prompt. The judge's completion starts with `YES_TEXT`
    (" Yes") or `NO_TEXT` (" No"); its first generated token is that word with
    its leading space, so P(Yes) is read from the first token's distribution."""
    return (f"{QUESTION_HEADER}{question}\n{RESPONSE_HEADER}{truncate_response(response, limit)}\n"
            f"{VERIFY_QUESTION}")


def grm_prompt(question: str, responses: list[str], limit: int = MAX_RESPONSE_CHARS) -> str:
    """DeepSeek-GRM pointwise prompt for one or more responses to `question`.
    The judge answers "Principles: ...\\nAnalysis: ...\\nScores: \\boxed{s1, ...}",
    one integer in [SCORE_MIN, SCORE_MAX] per response, in the order given."""
    if not responses:
        raise ValueError("grm_prompt needs at least one response")
    body = "".join(f"{response_header(i)}{truncate_response(r, limit)}\n"
                   for i, r in enumerate(responses, start=1))
    return f"{QUESTION_HEADER}{question}\n{body}{GRM_INSTRUCTION}\n"


def parse_verdict(completion: str) -> bool | None:
    """True for a completion whose first word is Yes, False for No, else None."""
    word = _VERDICT_RE.match(completion)
    return None if word is None else word.group(1) == YES_TEXT.strip()


def parse_grm_scores(completion: str, n: int) -> list[int] | None:
    """The `n` integer scores of the last "Scores: \\boxed{...}" in `completion`,
    or None when it is missing, has another count, a non-integer or a score
    outside [SCORE_MIN, SCORE_MAX]."""
    found = _SCORES_RE.findall(completion)
    if not found:
        return None
    parts = [p.strip() for p in found[-1].split(",")]
    if len(parts) != n or not all(re.fullmatch(r"\d+", p) for p in parts):
        return None
    scores = [int(p) for p in parts]
    if not all(SCORE_MIN <= s <= SCORE_MAX for s in scores):
        return None
    return scores


def first_token_ids(tokenizer) -> tuple[int, int]:
    """Ids of the first token of `YES_TEXT` and `NO_TEXT` under `tokenizer`
    (anything with `encode(text, add_special_tokens=False)`). Raises
    ValueError when either word is not a single token, or both share it: then
    P(Yes) cannot be read from the first generated token."""
    yes = tokenizer.encode(YES_TEXT, add_special_tokens=False)
    no = tokenizer.encode(NO_TEXT, add_special_tokens=False)
    if len(yes) != 1 or len(no) != 1 or yes == no:
        raise ValueError(f"judge tokenizer splits {YES_TEXT!r} -> {yes} or {NO_TEXT!r} -> {no}: "
                         "P(Yes) needs each to be one distinct token")
    return yes[0], no[0]

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

The response is the policy's text, so the prompt is built so that nothing a
response contains can act as part of the prompt:

    Question: 12+34=
    Response:
    > <think>2+4+0=6,1+3+0=4</think>\\boxed{46}
    Is the answer correct (Yes/No)?

- **Quoted.** Every line of a response is shown behind `QUOTE` ("> "), and
  every kind of line break in it (\\r\\n, \\r, \\v, \\f, \\x1c-\\x1e, \\x85,
  \\u2028, \\u2029) is shown as a newline followed by `QUOTE`. No line of the
  prompt's own starts with `QUOTE`, so a response cannot end its block, open
  a new turn or write a line of the prompt: a response block is exactly the
  run of quoted lines after its header.
- **Neutralised.** Inside a response (and the question) every occurrence of
  a `CONTROL_STRINGS` entry (the headers, the Yes/No question, the GRM
  instruction, the judge's own "Principles:", "Analysis:", "Scores:" and the
  truncation marker) is broken by `NEUTRAL` ("_") after its first
  character: "Scores:" is shown as "S_cores:". So each control string of a
  prompt occurs in it exactly once, as the prompt's own, whatever the
  response says (`control_counts` counts them), and the tiny judge, whose
  tokenizer spells each control string as one token, never sees that token
  inside a response.
- **Cut at the head.** A response longer than `MAX_RESPONSE_CHARS` keeps its
  *tail*, where the final answer the verifier reads is, and is shown
  starting with `TRUNCATION_MARKER` at the cut. The limit counts each line
  break as `len(QUOTE) + 1` characters, so a response of many short lines
  costs the judge's context no more than one long line.

`shown_response` is the response as the judge sees it inside the quotes
(neutralised, cut, marked); the tiny judge's corpus is labelled by the
verifier on exactly that text.

Both prompts are plain text fed to the engine as is (no chat template); the
tiny judge's tokenizer carries a chat template that renders a user message
verbatim, so a chat-style call gives the same tokens. Every character here is
printable ASCII or a newline, the tiny judge's alphabet.

The completion parsers (`parse_verdict`, `parse_grm_scores`) run in time
linear in the completion: the GRM one visits each "Scores:" once and each
box's content once (a box's scan stops at the next brace, so two scans never
overlap).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

# Shared by both formats.
QUESTION_HEADER = "Question: "
RESPONSE_HEADER = "Response:"
QUOTE = "> "
NEUTRAL = "_"
MAX_RESPONSE_CHARS = 160
TRUNCATION_MARKER = "[truncated] "

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
GRM_RESPONSE_OPEN = "[Response"

# The strings no response (or question) may contain: longest first, so the
# instruction is broken as a whole before the words inside it.
CONTROL_STRINGS = tuple(sorted({
    QUESTION_HEADER.strip(), RESPONSE_HEADER, GRM_RESPONSE_OPEN, TRUNCATION_MARKER.strip(),
    VERIFY_QUESTION, GRM_INSTRUCTION, PRINCIPLES, ANALYSIS, SCORES}, key=lambda s: (-len(s), s)))
assert not any(NEUTRAL in c or QUOTE.strip() in c or "\n" in c for c in CONTROL_STRINGS)

_CONTROL_RE = re.compile("|".join(re.escape(c) for c in CONTROL_STRINGS))
_LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_BOX_AFTER_SCORES = re.compile(r"Scores:\s*\\boxed\{([^{}]*)\}")


def neutralise(text: str) -> str:
    """`text` with every control string broken by `NEUTRAL` after its first
    character. The inserted character occurs in no control string, so a pass
    makes no new occurrence; a second pass only meets occurrences that
    overlapped one already broken ("[Response:" holds two)."""
    while _CONTROL_RE.search(text):
        text = _CONTROL_RE.sub(lambda m: m.group(0)[0] + NEUTRAL + m.group(0)[1:], text)
    return text


def _line_cost(line: str) -> int:
    return len(line) + len(QUOTE) + 1


def shown_response(text: str, limit: int = MAX_RESPONSE_CHARS) -> str:
    """The response as a judge is shown it inside its quoted block: line breaks
    made newlines, control strings neutralised, and, when it is longer than
    `limit` (a line break counting `len(QUOTE) + 1`), only its tail, after
    `TRUNCATION_MARKER`. Time linear in `limit`, whatever the length of `text`."""
    cut = len(text) > limit
    lines = _LINE_BREAK.split(neutralise(text[-limit:] if cut else text))
    budget = limit + len(QUOTE) + 1  # the first line's break is the header's, not the response's
    kept: list[str] = []
    for line in reversed(lines):
        if _line_cost(line) <= budget:
            kept.append(line)
            budget -= _line_cost(line)
            continue
        cut = True
        room = budget - len(QUOTE) - 1
        if room > 0:
            kept.append(line[-room:])
        break
    kept.reverse()
    if not kept:
        kept = [""]
    if cut:
        kept[0] = TRUNCATION_MARKER + kept[0]
    return "\n".join(kept)


def truncate_response(text: str, limit: int = MAX_RESPONSE_CHARS) -> str:
    """`shown_response` (kept under its old name: the cut keeps the tail)."""
    return shown_response(text, limit)


def quote_block(text: str, limit: int = MAX_RESPONSE_CHARS) -> str:
    """The lines a response occupies in a prompt: `shown_response`, each line
    behind `QUOTE`, no trailing newline."""
    return QUOTE + shown_response(text, limit).replace("\n", "\n" + QUOTE)


def response_header(index: int) -> str:
    """The line that opens response `index` (1-based) in a GRM prompt."""
    return f"{GRM_RESPONSE_OPEN} {index}]\n"


def verify_prompt(question: str, response: str, limit: int = MAX_RESPONSE_CHARS) -> str:
    """GenRM verification prompt. The judge's completion starts with `YES_TEXT`
    (" Yes") or `NO_TEXT` (" No"); its first generated token is that word with
    its leading space, so P(Yes) is read from the first token's distribution."""
    return (f"{QUESTION_HEADER}{neutralise(question)}\n{RESPONSE_HEADER}\n{quote_block(response, limit)}\n"
            f"{VERIFY_QUESTION}")


def grm_prompt(question: str, responses: Sequence[str], limit: int = MAX_RESPONSE_CHARS) -> str:
    """DeepSeek-GRM pointwise prompt for one or more responses to `question`.
    The judge answers "Principles: ...\\nAnalysis: ...\\nScores: \\boxed{s1, ...}",
    one integer in [SCORE_MIN, SCORE_MAX] per response, in the order given."""
    if not responses:
        raise ValueError("grm_prompt needs at least one response")
    body = "".join(f"{response_header(i)}{quote_block(r, limit)}\n" for i, r in enumerate(responses, start=1))
    return f"{QUESTION_HEADER}{neutralise(question)}\n{body}{GRM_INSTRUCTION}\n"


def control_counts(prompt: str) -> dict[str, int]:
    """How often each control string occurs in `prompt` (`str.count`). For a
    prompt of this module it is what the prompt itself writes, whatever the
    question and responses contain: one question header, one response header
    per response, one Yes/No question or GRM instruction (which holds the
    "Principles:", "Analysis:" and "Scores:" a GRM judge writes), one
    truncation marker per cut response, and 0 for the rest."""
    return {c: prompt.count(c) for c in CONTROL_STRINGS}


def parse_verdict(completion: str) -> bool | None:
    """True for a completion whose first word is Yes, False for No, else None."""
    start = len(completion) - len(completion.lstrip())
    for word, value in (("Yes", True), ("No", False)):
        end = start + len(word)
        if completion.startswith(word, start) and not (end < len(completion) and _word_char(completion[end])):
            return value
    return None


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def last_scores_box(completion: str) -> str | None:
    """The content of the last "Scores: \\boxed{...}" (no brace inside) of
    `completion`, None when there is none. One left-to-right pass."""
    last = None
    for last in _BOX_AFTER_SCORES.finditer(completion):
        pass
    return None if last is None else last.group(1)


def scores_in_box(box: str, n: int) -> list[int] | None:
    """The `n` integer scores in a box's content, or None when it has another
    count, a non-integer or a score outside [SCORE_MIN, SCORE_MAX]."""
    if box.count(",") + 1 != n:
        return None
    parts = [p.strip() for p in box.split(",")]
    if not all(p.isascii() and p.isdigit() for p in parts):
        return None
    if any(len(p.lstrip("0")) > len(str(SCORE_MAX)) for p in parts):  # out of range, and no int() of 5000 digits
        return None
    scores = [int(p) for p in parts]
    if not all(SCORE_MIN <= s <= SCORE_MAX for s in scores):
        return None
    return scores


def parse_grm_scores(completion: str, n: int) -> list[int] | None:
    """The `n` integer scores of the last "Scores: \\boxed{...}" in `completion`,
    or None when it is missing, has another count, a non-integer or a score
    outside [SCORE_MIN, SCORE_MAX]."""
    box = last_scores_box(completion)
    return None if box is None else scores_in_box(box, n)


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

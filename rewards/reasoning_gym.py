"""`reasoning_gym` reward: a reasoning-gym task's own scorer, run as a
built-in reward function (rewards.custom: on killable workers, with the
checker-failure rule).

The sample's `meta.reasoning_gym` is the library's entry (question, answer,
metadata; rl.data puts it there). The answer is the last
`<answer>...</answer>` of the response (reasoning-gym's `extract_answer`,
the format its system prompts ask for) or, when the recipe sets
`rewards.answer_pattern`, that regex's last match (RE2, as for `math`: a base
that answers in prose can be scored without the tags), scored by
`reasoning_gym.get_score_answer_fn(metadata.source_dataset)` — 1.0 right,
0.0 wrong, some tasks give partial credit between; `correct` is a score of
1.0. A sample without an entry is the dataset's fault: None, masked.
"""
from __future__ import annotations

from functools import lru_cache

TARGET = "rewards.reasoning_gym:score"


@lru_cache(maxsize=None)
def _scorer(dataset: str):
    from reasoning_gym import get_score_answer_fn

    return get_score_answer_fn(dataset)


def score(prompt, response: str, answer, metadata: dict) -> float | None:
    from rewards.custom import SETTINGS

    metadata = metadata or {}
    entry = metadata.get("reasoning_gym")
    if not isinstance(entry, dict) or "source_dataset" not in entry.get("metadata", {}):
        return None
    pattern = metadata.get(SETTINGS, {}).get("answer_pattern")
    if pattern is None:
        from reasoning_gym.utils import extract_answer

        extracted = extract_answer(response)
    else:
        from rewards.math import extract_answer

        extracted = extract_answer(response, pattern)
    return float(_scorer(entry["metadata"]["source_dataset"])(extracted, entry))

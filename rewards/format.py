"""`format` reward: 1 when the response is one `<think>...</think>` block
followed by an answer (the configured `answer_pattern`, else a `\\boxed{}`),
0 otherwise. Linear-time string scans only, so it runs inline in the hub."""
from __future__ import annotations

from rewards.math import extract_answer
from rewards.types import RewardResult, Sample, failed


def format_ok(response: str, answer_pattern=None) -> bool:
    body = response.lstrip()
    if not body.startswith("<think>"):
        return False
    end = body.find("</think>")
    if end < 0 or body.count("<think>") != 1 or body.count("</think>") != 1:
        return False
    answer = extract_answer(body[end + len("</think>"):], answer_pattern)
    return bool(answer and answer.strip())


def format_reward(sample: Sample, cfg) -> RewardResult:
    """The `format` reward of one sample under `cfg` (a RewardsConfig): the
    score of a `format` sample, and the term added to every sample when
    `format` is listed in `terms`."""
    response = sample.get("response")
    if not isinstance(response, str):
        return failed("sample needs a string 'response'")
    return RewardResult(float(format_ok(response, cfg.answer_pattern)), {"correct": None, "timeout": False})

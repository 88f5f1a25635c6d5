"""`format` reward: 1 when the response is one `<think>...</think>` block
followed by an answer (the configured `answer_pattern`, else a `\\boxed{}`),
0 otherwise. Linear-time string scans only, so it runs inline in the hub."""
from __future__ import annotations

from rewards.math import extract_answer
from rewards.types import RewardResult, Sample, register_reward


def format_ok(response: str, answer_pattern=None) -> bool:
    body = response.lstrip()
    if not body.startswith("<think>"):
        return False
    end = body.find("</think>")
    if end < 0 or body.count("<think>") != 1 or body.count("</think>") != 1:
        return False
    answer = extract_answer(body[end + len("</think>"):], answer_pattern)
    return bool(answer and answer.strip())


@register_reward("format")
def make_format_reward(cfg):
    def format_reward(sample: Sample) -> RewardResult:
        response = sample.get("response")
        if not isinstance(response, str):
            return RewardResult(0.0, {"correct": None, "timeout": False, "error": "sample needs a string 'response'"})
        ok = format_ok(response, cfg.answer_pattern)
        return RewardResult(1.0 if ok else 0.0, {"correct": None, "timeout": False})

    return format_reward

"""The one `\\boxed{}` parser, and the two readers that use it (the math
reward and the arithmetic task's own check) agreeing on every case."""
from __future__ import annotations

import pytest

from rewards.boxed import last_boxed
from rewards.config import RewardsConfig
from rewards.math import extract_answer, make_math_reward
from rl.data import arith

CASES = [  # response, the last box's content (hand-read)
    (r"a \boxed{1} b \boxed{\frac{1}{2}} c", r"\frac{1}{2}"),
    (r"\boxed{\{1,2\}}", r"\{1,2\}"),
    ("\\boxed{1}x\\boxed{ 042}", " 042"),
    (r"<think>7+1+0=8</think>\boxed{3208}", "3208"),
    (r"\boxed {12}", "12"),                     # whitespace before the brace
    (r"\boxed{{12}}", "{12}"),                  # nested braces (the old arith parser read "{12")
    (r"\boxed{12}}", "12"),                     # a stray closing brace after the box
    (r"\fbox{7} then \boxed{8}", "8"),
    (r"\boxed{8} then \fbox{7}", "7"),
    (r"\boxed{5} and \boxed of the box {6}", None),  # the last tag has no brace: no answer
    (r"\boxed{5} \boxed{unclosed", None),
    (r"\boxeddd{5}", None),
    ("no box", None),
    ("x" * 1_000_000, None),
]


@pytest.mark.parametrize("text,want", CASES)
def test_last_boxed(text, want):
    assert last_boxed(text) == want
    assert extract_answer(text) == want          # the reward's reader
    assert arith.boxed_answer(text) == want      # the arithmetic task's reader


def test_reward_and_task_check_agree_on_integer_answers():
    reward = make_math_reward(RewardsConfig())
    responses = [r"\boxed{{12}}", r"\boxed {12}", r"\boxed{12}}", r"\boxed{ 012}", r"\fbox{12}",
                 r"\boxed{12} \boxed{13}", r"\boxed{13} \boxed{12}", r"\boxed{1{2}", r"\boxed{12.5}"]
    got_reward = [reward({"kind": "math", "response": r, "answer": "12"}).score == 1.0 for r in responses]
    got_task = [arith.is_correct(r, "12") for r in responses]
    assert got_task == [False, True, True, True, True, False, True, False, False]
    # Both read "{12}" from the first response; they still differ on it because
    # the comparisons differ (math-verify reads {12} as 12, the task's int()
    # does not). The same holds for "12." and "12.0": not a parser difference.
    assert got_reward == [True] + got_task[1:]

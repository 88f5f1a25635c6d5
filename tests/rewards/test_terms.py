"""Item and group terms without Ray: extraction, format, length terms, config."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from rewards.config import RewardsConfig
from rewards.length import kimi_length_rewards, overlong_penalty, sample_length
from rewards.math import extract_answer, fast_compare, last_boxed
from rewards.code import last_python_block, normalise_tests
from rewards.format import format_reward
from rewards.registry import KINDS


def test_config_rejects_unknown_keys_and_terms():
    with pytest.raises(ValidationError):
        RewardsConfig(replicas=1, nonsense=3)
    with pytest.raises(ValidationError, match="unknown reward kind"):
        RewardsConfig(terms={"maths": 1.0})
    with pytest.raises(ValidationError, match="rewards.overlong"):
        RewardsConfig(terms={"overlong": 1.0})
    with pytest.raises(ValidationError):
        RewardsConfig(overlong={"max_len": 10, "cache_len": 20})
    with pytest.raises(ValidationError, match="regex"):
        RewardsConfig(answer_pattern="(unclosed")
    # valid for Python's re, but RE2 (which runs it on responses, in linear time) cannot run it
    unsupported = ((r"(\d)\1", r"invalid escape sequence: \\1"), (r"(?=\d)(\d+)", r"invalid perl operator: \(\?="))
    for pattern, reason in unsupported:
        with pytest.raises(ValidationError, match="answer_pattern: RE2, which reads answers in linear time, cannot "
                           "run this regex \\(" + reason) as err:
            RewardsConfig(answer_pattern=pattern)
        assert "\n" not in err.value.errors()[0]["msg"]  # one line for the CLI
    assert RewardsConfig(answer_pattern=r"Answer:\s*(\S+)").answer_pattern == r"Answer:\s*(\S+)"
    cfg = RewardsConfig()
    assert cfg.terms == {"math": 1.0} and cfg.replicas == 1 and cfg.kimi_length == 0.0


def test_answer_extraction():
    assert last_boxed(r"a \boxed{1} b \boxed{\frac{1}{2}} c") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{\{1,2\}}") == r"\{1,2\}"
    assert last_boxed(r"\boxed{unclosed") is None
    assert last_boxed("x" * 1_000_000) is None
    assert extract_answer("Answer: 12\nAnswer: 42", r"Answer:\s*(\S+)") == "42"
    assert extract_answer("Answer: é\nAnswer: 4€2 ok", r"Answer:\s*(\S+)") == "4€2"  # UTF-8 inside RE2, str out
    assert extract_answer("no group: 7 and 8", r"\d") == "8"
    assert extract_answer("a\nb: 3", r"a.b: (\d)") == "3"  # '.' matches a newline, as with re.DOTALL
    assert extract_answer("nothing here", r"Answer: (\d+)") is None
    assert fast_compare("1234", "1234") is True
    assert fast_compare(" 12 ", "13") is False
    assert fast_compare("3.0", "3") is True
    assert fast_compare(r"\frac12", "0.5") is None  # needs math-verify


def test_format_reward():
    cfg = RewardsConfig()

    def fmt(response):
        return format_reward({"response": response}, cfg)

    assert fmt(r"<think>12+34</think> \boxed{46}").score == 1.0
    assert fmt(r"\boxed{46}").score == 0.0
    assert fmt(r"<think>a</think><think>b</think>\boxed{1}").score == 0.0
    assert fmt(r"<think>a</think> no answer").score == 0.0
    assert fmt(r"<think>\boxed{1}</think>").score == 0.0  # the answer must follow the thinking
    assert fmt(None).masked and fmt(None).details["error"] == "sample needs a string 'response'"


def test_scorer_dispatches_through_the_registry():
    """The registry's keys are the kinds: a `format` sample and the `format`
    term both come from format_reward; any other kind is one masked line
    naming the registered kinds. No math worker starts (no math sample)."""
    from rewards.scorer import Scorer

    assert list(KINDS) == ["math", "code", "format", "reasoning_gym", "genrm", "grm"]
    scorer = Scorer(RewardsConfig(terms={"math": 1.0, "format": 0.5}))
    try:
        good, bare, unknown, listed = scorer.score_items([
            {"kind": "format", "response": r"<think>a</think> \boxed{1}"}, {"kind": "format", "response": "x"},
            {"kind": "maths", "response": "x"}, {"kind": ["math"], "response": "x"}])
    finally:
        scorer.close()
    assert (good.score, good.details["terms"]) == (0.5, {"format": 1.0})
    assert (bare.score, bare.masked) == (0.0, False)
    assert unknown.masked and unknown.details["error"] == "unknown kind 'maths' (known: code, format, genrm, grm, math, reasoning_gym)"
    assert listed.details["error"] == "unknown kind ['math'] (known: code, format, genrm, grm, math, reasoning_gym)"
    assert scorer._runners["math"]._pool is None


def test_an_environments_terms_are_added_with_their_weights_and_a_missing_one_masks():
    """Terms an environment awarded (the item's `env`) are added to the row's
    own kind with `rewards.env_terms` weights (1.0 when not listed); a term
    the environment could not score (None) or that is not a finite number
    masks the sample with one line; the cache tells items apart by their terms."""
    from rewards.scorer import Scorer

    good = r"<think>a</think> \boxed{1}"
    scorer = Scorer(RewardsConfig(terms={"format": 0.5}, env_terms={"game": 2.0}))
    try:
        both, unlisted, same_text, missing, nan, text = scorer.score_items([
            {"kind": "format", "response": good, "env": {"game": 0.25, "bonus": 1.0}},
            {"kind": "format", "response": good, "env": {"bonus": -1.0}},
            {"kind": "format", "response": good, "env": {"game": 1.0}},
            {"kind": "format", "response": good, "env": {"game": None}},
            {"kind": "format", "response": good, "env": {"game": float("nan")}},
            {"kind": "format", "response": good, "env": "lots"}])
    finally:
        scorer.close()
    assert both.score == pytest.approx(0.5 * 1.0 + 2.0 * 0.25 + 1.0)
    assert both.details["terms"] == {"format": 1.0, "env.game": 0.25, "env.bonus": 1.0}
    assert unlisted.score == pytest.approx(-0.5) and same_text.score == pytest.approx(2.5)
    assert missing.masked and missing.details["error"] == "env: the environment could not score its term 'game'"
    assert nan.masked and nan.details["error"] == "env: term 'game' is nan, not a finite number"
    assert text.masked and "name -> number, not str" in text.details["error"]


def test_judge_folder_comes_from_the_config_or_the_caller():
    """rewards/ never builds a judge: with no `rewards.judge.model` and no
    folder passed down, starting the judges is a one-line user error."""
    from core.errors import UserError
    from rewards.judge.config import JudgeConfig
    from rewards.judge.pool import resolve_model

    assert resolve_model(JudgeConfig(model="/m"), "/default") == "/m"
    assert resolve_model(JudgeConfig(), "/default") == "/default"
    with pytest.raises(UserError, match="^rewards.judge.model is not set"):
        resolve_model(JudgeConfig())


def test_length_terms_hand_computed():
    # DAPO: L_max 100, L_cache 20: no penalty up to 80, -0.5 at 90, -1 from 100 on.
    assert overlong_penalty(80, 100, 20) == 0.0
    assert overlong_penalty(90, 100, 20) == pytest.approx(-0.5)
    assert overlong_penalty(150, 100, 20) == -1.0
    # Kimi: lengths 10, 20, 30 -> lam 0.5, 0, -0.5; wrong answers keep only the negative part.
    assert kimi_length_rewards([10, 20, 30], [True, True, False]) == pytest.approx([0.5, 0.0, -0.5])
    assert kimi_length_rewards([10, 20, 30], [False, False, True]) == pytest.approx([0.0, 0.0, -0.5])
    assert kimi_length_rewards([7, 7], [True, False]) == [0.0, 0.0]
    assert sample_length({"response": "abcd", "length": 2}) == 2
    assert sample_length({"response": "abcd"}) == 4


def test_code_parsing():
    resp = "first\n```python\nprint(1)\n```\nthen\n```\nprint(2)\n```\n```bash\nls\n```"
    assert last_python_block(resp) == "print(2)\n"
    assert normalise_tests({"inputs": ["1"], "outputs": ["2"]}) == [{"input": "1", "output": "2"}]
    assert normalise_tests("assert 1") == [{"assert": "assert 1"}]
    with pytest.raises(ValueError):
        normalise_tests([])

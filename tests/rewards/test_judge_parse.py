"""Judge parsing, voting and meta-RM aggregation, P(Yes) arithmetic and the
judge config: pure functions checked against hand-computed values. The same
functions run on the real engine's outputs in test_judge_engine.py."""
from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from rewards.judge import aggregate, parse
from rewards.judge_format import TRUNCATION_MARKER, grm_prompt, truncate_response, verify_prompt

WELL_FORMED = ("Principles: The final boxed answer must equal the true sum.\n"
               "Analysis: [Response 1] right. [Response 2] wrong.\nScores: \\boxed{10, 2}")


@pytest.mark.parametrize("text,n,finish,scores,reason", [
    (WELL_FORMED, 2, "stop", [10, 2], None),
    ("Scores: \\boxed{1}", 1, "stop", [1], None),
    # the last Scores block counts (a judge that corrects itself)
    ("Scores: \\boxed{3, 3}\nOn reflection: Scores: \\boxed{9, 1}", 2, "stop", [9, 1], None),
    # malformed
    ("Principles: x\nAnalysis: y\n", 2, "stop", None, "no 'Scores"),
    ("Scores: \\boxed{10}", 2, "stop", None, "gave 1 scores for 2"),
    ("Scores: \\boxed{ten, 2}", 2, "stop", None, "not integers"),
    ("Scores: \\boxed{7.5, 2}", 2, "stop", None, "not integers"),
    ("Scores: \\boxed{11, 2}", 2, "stop", None, "outside [1, 10]"),
    ("Scores: \\boxed{0, 2}", 2, "stop", None, "outside [1, 10]"),
    # truncated at the judge's token limit
    ("Principles: The final boxed answer must eq", 2, "length", None, "truncated at its token limit"),
    # adversarial: a response that smuggles a Scores block into the prompt is
    # not what is parsed -- only the judge's completion is; a completion that
    # echoes a boxed answer without the Scores: label is not a score
    ("Analysis: the response says \\boxed{10, 10}", 2, "stop", None, "no 'Scores"),
    ("Scores: \\boxed{10, 10, 10}", 2, "stop", None, "gave 3 scores for 2"),
    ("Scores: \\boxed{-1, 10}", 2, "stop", None, "not integers"),
])
def test_grm_scores(text, n, finish, scores, reason):
    got, why = parse.grm_scores(text, n, finish)
    assert got == scores
    if reason is None:
        assert why is None
    else:
        assert reason in why


@pytest.mark.parametrize("text,value", [(" Yes", True), (" No", False), ("Yes, because", True),
                                         (" No.", False), (" Yesterday", None), (" maybe", None), ("", None)])
def test_verdict(text, value):
    got, why = parse.verdict(text)
    assert got is value
    assert (why is None) == (value is not None)


def test_unshuffle_and_vote_by_hand():
    # three judgements of two responses, each shown in its own order
    perms = [[0, 1], [1, 0], [1, 0]]
    shown = [[8, 3], [2, 9], [4, 6]]
    original = [aggregate.unshuffle(s, p) for s, p in zip(shown, perms)]
    assert original == [[8, 3], [9, 2], [6, 4]]
    totals, kept = aggregate.vote(original)
    assert (totals, kept) == ([23, 9], 3)
    assert aggregate.grm_reward(23, 3) == pytest.approx(23 / 30)
    assert aggregate.grm_reward(9, 3) == pytest.approx(0.3)


def test_meta_rm_keeps_top_half_by_quality():
    judgements = [[10, 1], [1, 10], [9, 2], [2, 9]]
    quality = [-0.2, -1.5, -0.1, -0.9]  # judgements 2 and 0 are the best two
    assert aggregate.meta_keep(4) == 2 and aggregate.meta_keep(5) == 2 and aggregate.meta_keep(1) == 1
    totals, kept = aggregate.vote(judgements, quality, keep=aggregate.meta_keep(4))
    assert (totals, kept) == ([19, 3], 2)
    # ties keep the earlier judgement
    totals, kept = aggregate.vote(judgements, [0.0, 0.0, 0.0, 0.0], keep=1)
    assert (totals, kept) == ([10, 1], 1)
    # fewer valid judgements than the keep count: all vote
    assert aggregate.vote([[5, 5]], [0.0], keep=2) == ([5, 5], 1)


def test_p_yes_by_hand():
    ly, ln = math.log(0.6), math.log(0.2)
    assert aggregate.p_yes(ly, ln, normalise=True) == pytest.approx(0.75)
    assert aggregate.p_yes(ly, ln, normalise=False) == pytest.approx(0.6)
    assert aggregate.p_yes(-1000.0, -1001.0) == pytest.approx(1 / (1 + math.exp(-1)))
    assert aggregate.mean([1.0, 0.0, 0.0, 1.0]) == 0.5


def test_prompts_truncate_long_responses():
    long = "9" * 400
    assert truncate_response(long).endswith(TRUNCATION_MARKER)
    assert TRUNCATION_MARKER in verify_prompt("1+1", long)
    assert long not in grm_prompt("1+1", [long, "2"])


def test_the_response_limit_is_the_recipe_s():
    """rewards.judge.max_response_chars reaches the prompts the hub sends."""
    from rewards.judge.config import JudgeConfig
    from rewards.judge.kinds import plan_genrm, plan_grm

    sample = {"prompt": "1+1=", "response": "2" * 100 + "\\boxed{2}"}
    for limit, cut in [(40, True), (400, False)]:
        cfg = JudgeConfig(model="m", max_response_chars=limit, genrm={"logprobs": False})
        reqs = plan_genrm([(0, sample)], cfg, {}, deadline=0.0)[0] + plan_grm([[(0, sample)]], cfg, {}, 0.0)[0]
        assert reqs and all((TRUNCATION_MARKER in r["prompt"]) == cut for r in reqs)
        assert all(("2" * 41 in r["prompt"]) == (not cut) for r in reqs)


def test_config_rejects_bad_values():
    from rewards.config import RewardsConfig
    from rewards.judge.config import JudgeConfig

    cfg = RewardsConfig(terms={"math": 1.0, "genrm": 0.5, "grm": 0.25}, judge={"grm": {"k": 8}})
    assert cfg.judge.grm.k == 8 and cfg.judge.grm.temperature == 0.5
    with pytest.raises(ValidationError, match="needs rewards.judge"):
        RewardsConfig(terms={"genrm": 1.0})
    with pytest.raises(ValidationError, match="unknown reward kind"):
        RewardsConfig(terms={"judge": 1.0})
    with pytest.raises(ValidationError, match="extra"):
        JudgeConfig(k=3)
    with pytest.raises(ValidationError, match="tensor_parallel"):
        JudgeConfig(gpus_per_replica=1, tensor_parallel=2)

"""The prompt sampler: uniform epochs, No-Positive-Resampling, prioritised
and curriculum draws, their metrics and an exact resume in every mode."""
from __future__ import annotations

import json
import math

import pytest

from rl.data.config import DataConfig
from rl.data.sampler import PromptSampler
from core.errors import UserError
from rl.recipe import validate


def _rows(n: int, difficulty=None) -> list[dict]:
    rows = [{"prompt": str(i)} for i in range(n)]
    if difficulty is not None:
        rows = [{**r, "meta": {"difficulty": d}} for r, d in zip(rows, difficulty)]
    return rows


def _index(batch: list[dict]) -> list[int]:
    return [int(r["prompt"]) for r in batch]


# ---- uniform ------------------------------------------------------------------------


def test_uniform_covers_each_epoch_and_reshuffles():
    prompts = _rows(10)
    s = PromptSampler(prompts, seed=0)
    first, second = s.next_batch(10), s.next_batch(10)
    assert sorted(p["prompt"] for p in first) == sorted(p["prompt"] for p in prompts)
    assert first != second and s.epoch == 1


def test_uniform_resume_continues_with_the_same_prompts():
    prompts = _rows(13)
    a = PromptSampler(prompts, seed=7)
    a.next_batch(5), a.next_batch(5), a.next_batch(5)  # crosses an epoch boundary
    state = json.loads(json.dumps(a.state_dict()))  # survives a JSON checkpoint
    expected = [a.next_batch(4) for _ in range(8)]
    b = PromptSampler(prompts, seed=123)
    b.next_batch(3)
    b.load_state_dict(state)
    assert [b.next_batch(4) for _ in range(8)] == expected
    with pytest.raises(UserError):
        PromptSampler(prompts[:5]).load_state_dict(state)


def test_a_checkpoint_from_before_batch_shaping_still_loads():
    a = PromptSampler(_rows(9), seed=2)
    a.next_batch(13)
    old = {k: a.state_dict()[k] for k in ("epoch", "position", "num_prompts", "rng_state")}
    b = PromptSampler(_rows(9), seed=5)
    b.load_state_dict(json.loads(json.dumps(old)))
    assert b.drawn == 13 and b.next_batch(11) == a.next_batch(11)


def test_uids_are_unique_over_epochs_and_count_what_was_drawn():
    prompts = _rows(7)
    s = PromptSampler(prompts, seed=3)
    rows = [r for _ in range(5) for r in s.next_batch(4)]  # 20 draws: 2 epochs and 6 of the third
    uids = [r["uid"] for r in rows]
    assert len(set(uids)) == 20 and s.drawn == 20
    assert all(rows[i]["prompt"] == str(u % 7) for i, u in enumerate(uids))
    assert sorted(u // 7 for u in uids) == [0] * 7 + [1] * 7 + [2] * 6
    assert "uid" not in prompts[0]  # the dataset rows themselves are not changed


# ---- No-Positive-Resampling ------------------------------------------------------------


def _npr(threshold=0.75, min_samples=8, **kw) -> DataConfig:
    return DataConfig(npr_threshold=threshold, npr_min_samples=min_samples, **kw)


def test_npr_retires_exactly_the_prompts_that_cross_after_min_samples():
    s = PromptSampler(_rows(5), seed=0, cfg=_npr())
    # uid % 5 is the prompt: 0..4 in epoch 0, 5..9 in epoch 1
    s.observe([(0, 4, 4), (1, 3, 4), (2, 2, 4), (3, 8, 8), (4, 4, 4)])
    # 0: 4/4 = 1.0 but only 4 samples; 3: 8/8 at exactly min_samples -> retired
    assert s.retired == {3}
    s.observe([(5, 3, 4), (6, 3, 4), (7, 3, 4), (9, 1, 4)])
    # 0: 7/8 = 0.875 >= 0.75; 1: 6/8 = 0.75 (equal counts); 2: 5/8 = 0.625 stays; 4: 5/8 stays
    assert s.retired == {0, 1, 3}
    assert s.metrics() == {  # pool: prompts 2 and 4, both at 5/8
        "data/pool_size": 2, "data/retired": 3, "data/retired_this_step": 3,
        "data/groups_all_correct_this_step": 3, "data/groups_none_correct_this_step": 0,
        "data/epoch": 0, "data/pool_pass_rate": pytest.approx(5 / 8)}
    assert s.metrics()["data/retired_this_step"] == 0  # the window restarts at each call
    off = PromptSampler(_rows(5), seed=0)  # NPR off: the same counts retire nothing
    off.observe([(0, 4, 4), (1, 3, 4), (2, 2, 4), (3, 8, 8), (5, 3, 4), (6, 3, 4)])
    assert off.retired == set() and off.metrics()["data/pool_size"] == 5


def test_a_retired_prompt_never_comes_back():
    epoch0 = _index(PromptSampler(_rows(6), seed=4).next_batch(6))  # the same seed's first order
    s = PromptSampler(_rows(6), seed=4, cfg=_npr())
    head = _index(s.next_batch(2))
    gone = epoch0[2]  # next in epoch 0 but not drawn yet: it must not be drawn in the rest of it either
    s.observe([(gone, 8, 8), (head[0], 9, 10)])  # epoch-0 uids are the indices
    assert s.retired == {gone, head[0]}
    rows = [r for _ in range(7) for r in s.next_batch(5)]  # 35 draws: the rest of epoch 0 and epochs 1..8
    live = set(range(6)) - s.retired
    # epoch 0 still gives the 3 live prompts after `gone`; epochs 1..8 give all 4 live ones
    assert {i: _index(rows).count(i) for i in live} == {i: 8 + (i != head[1]) for i in live}
    assert len({r["uid"] for r in rows}) == 35 and s.drawn == 37


def test_an_empty_pool_is_a_one_line_user_error():
    s = PromptSampler(_rows(2), seed=0, cfg=_npr(threshold=0.9, min_samples=4))
    s.observe([(0, 4, 4), (1, 4, 4)])
    with pytest.raises(UserError, match=r"data\.npr_threshold: all 2 training prompts") as err:
        s.next_batch(1)
    assert "\n" not in str(err.value)


def test_observe_rejects_impossible_counts():
    with pytest.raises(ValueError, match="uid 3 has 5 correct of 4"):
        PromptSampler(_rows(4)).observe([(3, 5, 4)])


# ---- prioritised --------------------------------------------------------------------------


def _prioritised_four() -> PromptSampler:
    s = PromptSampler(_rows(4), seed=11, cfg=DataConfig(sampling="prioritised", prioritised_floor=0.1))
    s.observe([(0, 0, 4), (1, 2, 4), (2, 3, 4), (3, 4, 4)])  # s = 0, 1/2, 3/4, 1
    return s


def test_prioritised_weights_follow_one_minus_success_with_a_floor():
    s = _prioritised_four()
    assert [s.weight(i) for i in range(4)] == [1.0, 0.5, 0.25, 0.1]  # 1 - 1 = 0 is floored at 0.1
    fresh = PromptSampler(_rows(3), cfg=DataConfig(sampling="prioritised", prior_success=0.8))
    assert fresh.weight(0) == pytest.approx(0.2)  # unseen: 1 - prior_success


def test_prioritised_frequencies_match_the_weights():
    # w = (1, 1/2, 1/4, 1/10), W = 37/20: one draw picks i with p = w_i / W = (20, 10, 5, 2)/37.
    # N = 20000 independent batches: the count of i is Binomial(N, p_i), whose frequency has
    # sd sqrt(p(1-p)/N) <= 0.0036; 4 sd (the largest 0.0141) fails a correct sampler with
    # probability < 1e-4 per prompt, and a wrong law (e.g. uniform 0.25) is off by > 0.1.
    s, n = _prioritised_four(), 20000
    counts = [0] * 4
    for _ in range(n):
        counts[int(s.next_batch(1)[0]["prompt"])] += 1
    for i, p in enumerate((20 / 37, 10 / 37, 5 / 37, 2 / 37)):
        assert abs(counts[i] / n - p) < 4 * math.sqrt(p * (1 - p) / n), (i, counts)


def test_prioritised_batches_are_drawn_without_replacement():
    # A batch of 2: i is in it with pi_i = p_i + sum_j p_j * w_i / (W - w_j) (first pick j, then i
    # among the rest) = 0.8561, 0.6459, 0.3519, 0.1461 (sum 2). Binomial(N, pi_i) again, 4 sd.
    s, n = _prioritised_four(), 20000
    counts = [0] * 4
    for _ in range(n):
        batch = _index(s.next_batch(2))
        assert len(set(batch)) == 2
        for i in batch:
            counts[i] += 1
    for i, pi in enumerate((0.856088, 0.645909, 0.351890, 0.146113)):
        assert abs(counts[i] / n - pi) < 4 * math.sqrt(pi * (1 - pi) / n), (i, counts)


def test_prioritised_pool_smaller_than_the_batch_repeats_with_unique_uids():
    s = PromptSampler(_rows(3), seed=1, cfg=DataConfig(sampling="prioritised", npr_threshold=0.9,
                                                       npr_min_samples=4))
    s.observe([(2, 4, 4)])  # prompt 2 retires: two prompts left
    batch = s.next_batch(5)  # three draws without replacement: 2 + 2 + 1
    assert sorted(_index(batch)) == [0, 0, 0, 1, 1] or sorted(_index(batch)) == [0, 0, 1, 1, 1]
    assert len({r["uid"] for r in batch}) == 5 and all(r["uid"] % 3 == int(r["prompt"]) for r in batch)


# ---- curriculum ---------------------------------------------------------------------------


def test_curriculum_goes_easy_to_hard_then_keeps_the_hard_fraction():
    difficulty = [3, 1, 2, 1, 0, 2]
    cfg = DataConfig(sampling="curriculum", curriculum_warmup_epochs=1, curriculum_hard_fraction=0.5)
    s = PromptSampler(_rows(6, difficulty), seed=5, cfg=cfg)
    warmup = _index(s.next_batch(6))
    assert [difficulty[i] for i in warmup] == [0, 1, 1, 2, 2, 3]
    hard = _index(s.next_batch(3))  # ceil(0.5 * 6) = 3 hardest: 0 (3) and 2, 5 (2)
    assert sorted(hard[:2]) == [2, 5] and hard[2] == 0
    assert _index(s.next_batch(3))[2] == 0 and s.epoch == 2
    # ties (1 and 3; 2 and 5) follow each epoch's shuffle, so two seeds give both orders
    orders = {tuple(_index(PromptSampler(_rows(6, difficulty), seed=k, cfg=cfg).next_batch(6))) for k in range(20)}
    assert len(orders) == 4


def test_curriculum_without_labels_ranks_by_observed_failure():
    cfg = DataConfig(sampling="curriculum", curriculum_hard_fraction=1.0, prior_success=0.5)
    s = PromptSampler(_rows(5), seed=0, cfg=cfg)
    s.next_batch(5)  # epoch 0: nothing observed, all at the prior, the shuffle decides
    s.observe([(0, 1, 4), (1, 4, 4), (2, 0, 4), (3, 3, 4)])  # failure 3/4, 0, 1, 1/4; 4 unseen: 1/2
    assert _index(s.next_batch(5)) == [1, 3, 4, 0, 2]


def test_curriculum_needs_every_row_labelled_or_none():
    cfg = DataConfig(sampling="curriculum")
    with pytest.raises(UserError, match="2 of 3 training rows have meta.difficulty"):
        PromptSampler(_rows(3, [1, 2, None]), cfg=cfg)
    with pytest.raises(UserError, match="row 1 has meta.difficulty 'hard'"):
        PromptSampler(_rows(2, [1, "hard"]), cfg=cfg)
    PromptSampler(_rows(3, [1, 2, None]))  # uniform does not read the labels


# ---- resume, every mode -------------------------------------------------------------------


MODES = {
    "uniform": DataConfig(npr_threshold=0.7, npr_min_samples=8),
    "prioritised": DataConfig(sampling="prioritised", npr_threshold=0.7, npr_min_samples=8),
    "curriculum": DataConfig(sampling="curriculum", npr_threshold=0.7, npr_min_samples=8,
                             curriculum_hard_fraction=0.6),
}


def _score(i: int, epoch: int) -> int:
    return 4 if i % 4 == 3 else (i + epoch) % 4


def _steps(s: PromptSampler, n: int) -> list:
    """n controller steps: draw, score, observe, log. Prompts 3 and 7 always get 4 of 4 right
    (they retire); prompt i in epoch e gets (i + e) % 4, so pass rates move between epochs."""
    out = []
    for _ in range(n):
        batch = s.next_batch(3)
        s.observe([(r["uid"], _score(r["uid"] % 11, r["uid"] // 11), 4) for r in batch])
        out.append((batch, s.metrics()))
    return out


@pytest.mark.parametrize("mode", sorted(MODES))
def test_resume_draws_the_same_batches_in_every_mode(mode):
    a = PromptSampler(_rows(11), seed=3, cfg=MODES[mode])
    _steps(a, 7)  # mid-epoch, with counts that changed since the epoch began, some prompts retired
    assert a.retired and (mode == "prioritised" or 0 < a.position < len(a._order))
    state = json.loads(json.dumps(a.state_dict()))
    b = PromptSampler(_rows(11), seed=99, cfg=MODES[mode])
    _steps(b, 2)
    b.load_state_dict(state)
    assert _steps(b, 12) == _steps(a, 12)
    assert b.state_dict() == a.state_dict()


def test_curriculum_resume_keeps_the_order_its_epoch_began_with():
    cfg = DataConfig(sampling="curriculum", curriculum_hard_fraction=1.0)
    a = PromptSampler(_rows(4), seed=0, cfg=cfg)
    a.next_batch(4)
    a.observe([(0, 3, 4), (1, 2, 4), (2, 1, 4), (3, 0, 4)])  # failure 1/4, 1/2, 3/4, 1
    assert _index(a.next_batch(1)) == [0]  # epoch 1 is [0, 1, 2, 3]
    a.observe([(6, 12, 12), (7, 8, 8)])  # now 2 fails 3/16 and 3 fails 4/12: a fresh sort says 2, 3, 1
    state = json.loads(json.dumps(a.state_dict()))
    b = PromptSampler(_rows(4), seed=1, cfg=cfg)
    b.load_state_dict(state)
    assert _index(b.next_batch(3)) == _index(a.next_batch(3)) == [1, 2, 3]
    assert _index(b.next_batch(4)) == _index(a.next_batch(4)) == [2, 0, 3, 1]  # epoch 2 sorts afresh


def test_resume_refuses_another_sampling_mode():
    state = PromptSampler(_rows(4), cfg=MODES["uniform"]).state_dict()
    with pytest.raises(UserError, match="data.sampling 'uniform', the recipe now says 'prioritised'"):
        PromptSampler(_rows(4), cfg=MODES["prioritised"]).load_state_dict(state)


# ---- config -------------------------------------------------------------------------------


@pytest.mark.parametrize("data, key", [
    ({"npr_min_samples": 4}, "npr_min_samples is only read with npr_threshold"),
    ({"prior_success": 0.2}, "prior_success is only read with sampling"),
    ({"prioritised_floor": 0.2}, "prioritised_floor is only read with sampling 'prioritised'"),
    ({"sampling": "prioritised", "curriculum_hard_fraction": 0.3}, "curriculum_hard_fraction is only read"),
    ({"sampling": "uniform", "curriculum_warmup_epochs": 2}, "curriculum_warmup_epochs is only read"),
    ({"npr_threshold": 1.5}, "data.npr_threshold"),
    ({"prioritised_floor": 0, "sampling": "prioritised"}, "data.prioritised_floor"),
    ({"sampling": "kimi"}, "data.sampling"),
])
def test_bad_shaping_settings_are_one_line_errors_naming_the_key(data, key):
    with pytest.raises(UserError, match=key) as err:
        validate({"data": data})
    assert "\n" not in str(err.value)


def test_a_dumped_config_loads_again():
    cfg = DataConfig(sampling="prioritised", prioritised_floor=0.2, npr_threshold=0.9)
    assert DataConfig(**json.loads(cfg.model_dump_json())) == cfg
    assert DataConfig(**DataConfig().model_dump()) == DataConfig()

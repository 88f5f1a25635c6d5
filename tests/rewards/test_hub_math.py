"""The real hub on the local Ray cluster: math equivalences, pathological
inputs, group terms, caching, metrics, and use from inside another actor."""
from __future__ import annotations

import pytest

# (reference, model answer inside \boxed{}, correct?)
TABLE = [
    ("1234", "1234", True),
    ("1234", "1,234", True),
    ("1234", "1235", False),
    ("0.5", r"\frac{1}{2}", True),
    ("0.5", "1/2", True),
    (r"\frac12", "0.5", True),
    ("0.75", r"\dfrac{3}{4}", True),
    ("3", "3.0", True),
    ("-1/3", r"-\frac{1}{3}", True),
    ("1.5", r"1\frac{1}{2}", True),
    ("0.5", r"50\%", True),
    ("1000", "10^{3}", True),
    (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}", True),
    (r"\{1,2,3\}", r"\{3,2,1\}", True),
    (r"\{1,2,3\}", r"\{1,2\}", False),
    ("[0,1)", "[0,1)", True),
    ("[0,1)", "(0,1]", False),
    ("(x+1)^2", "x^2+2x+1", True),
    ("(x+1)^2", "x^2+1", False),
    ("3.14159", r"\pi", False),
    ("7", "", False),
    ("7", "   ", False),
]


def _math(answer, boxed, **extra):
    return {"kind": "math", "response": f"<think>work</think> \\boxed{{{boxed}}}", "answer": answer, **extra}


def test_equivalence_table(hub):
    results = hub.score([_math(a, b) for a, b, _ in TABLE])
    got = [(a, b, r.details["correct"]) for (a, b, _), r in zip(TABLE, results)]
    assert got == [(a, b, want) for a, b, want in TABLE]
    for (_, _, want), r in zip(TABLE, results):
        assert r.score == (1.0 if want else 0.0)
        assert r.details["terms"] == {"math": r.score} and r.details["timeout"] is False


def test_no_answer_and_bad_samples(hub):
    no_box, wrong_type, unknown, no_answer = hub.score([
        {"kind": "math", "response": "I think it is 7", "answer": "7"},
        "just a string",
        {"kind": "poetry", "response": "x"},
        {"kind": "math", "response": r"\boxed{7}"},
    ])
    assert no_box.score == 0.0 and no_box.details["correct"] is False
    assert wrong_type.score == 0.0 and "JSON object" in wrong_type.details["error"]
    assert unknown.score == 0.0 and "unknown kind" in unknown.details["error"]
    assert no_answer.score == 0.0 and "answer" in no_answer.details["error"]


def test_pathological_inputs_score_0_unmasked_while_others_flow(hub):
    """Answers that hang the checker (GMP, sympy) fail twice, the second time
    alone under a CPU-seconds limit: a verdict of 0 the learner trains on, not
    a masked sample. Items of the same batch and of other batches still flow."""
    import ray

    nested = "(" * 2000 + "1" + ")" * 2000
    tower = "9^{9^{9^{9}}}"
    giant = "+".join(f"x^{{{i}}}" for i in range(800))
    megabyte = "la " * 350_000
    hang = [_math("1", tower), _math("1", nested), _math("1", "(10^{10})!"), _math("1", "2^{2^{40}}")]
    fine = [_math("0.5", r"\frac{1}{2}"), _math("7", "8"), {"kind": "math", "response": megabyte, "answer": "1"},
            _math("1", "1+" * 600_000 + "1"), _math("2", giant), _math("0.25", r"\frac{1}{4}")]
    bad_ref = hub.score_groups_async([[s] for s in hang + fine])
    good = [_math(str(n), str(n)) for n in range(40)] + [_math("0.5", r"\frac{1}{2}")]
    good_results = hub.score(good)  # sent while the pathological batch is being killed item by item
    assert [r.score for r in good_results] == [1.0] * len(good)
    results = [g[0] for g in ray.get(bad_ref)]
    hung, rest = results[:len(hang)], results[len(hang):]
    for r in hung:
        assert (r.score, r.masked, r.details["correct"], r.details["retried"]) == (0.0, False, False, True)
        assert "CPU seconds" in r.details["checker_failure"] and r.details["timeout"] is True
    # the same batch: verdicts as if the hanging items were not there
    assert [r.score for r in rest] == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert not any(r.masked or "retried" in r.details for r in rest)
    assert rest[2].details["correct"] is False  # a megabyte without an answer
    assert "longer than" in rest[3].details["note"] and "longer than" in rest[4].details["note"]
    # the replica that killed its workers still scores, including the slow path
    after = hub.score([_math("0.25", r"\frac{1}{4}"), _math("2", "3")] * 4)
    assert [r.score for r in after] == [1.0, 0.0] * 4
    m = hub.metrics()
    assert m["retried"] >= len(hang) and m["content_failures"] >= len(hang)


def test_a_long_integer_reference_scores_without_crashing_the_batch(hub):
    """A reference of 4,400 digits is past Python's int/str guard (4,300):
    compared as digit strings it scores like any other, and the items beside
    it are scored too."""
    gold = "7" * 4400
    wrong_short, beside, slow = hub.score([_math(gold, "7"), _math("12", "12"), _math("0.5", r"\frac{1}{2}")])
    assert (wrong_short.score, wrong_short.masked, wrong_short.details["correct"]) == (0.0, False, False)
    assert beside.score == 1.0 and slow.score == 1.0


def test_group_terms_and_weights(ray_local):
    from rewards.config import RewardsConfig
    from rewards.hub import start_hub

    cfg = RewardsConfig(terms={"math": 1.0, "format": 0.5}, overlong={"max_len": 100, "cache_len": 20},
                        kimi_length=0.1, replicas=1, replica_cpus=0)
    h = start_hub(cfg)
    try:
        group = [
            {"kind": "math", "response": r"<think>a</think>\boxed{4}", "answer": "4", "length": 10},
            {"kind": "math", "response": r"\boxed{4}", "answer": "4", "length": 90},
            {"kind": "math", "response": r"<think>b</think>\boxed{5}", "answer": "4", "length": 50},
        ]
        (rs,) = h.score_groups([group])
        # kimi lam: 0.5, -0.5, 0.0 (L in 10..90); overlong: 0, -0.5, 0
        assert rs[0].score == pytest.approx(1.0 + 0.5 * 1.0 + 0.1 * 0.5)
        assert rs[1].score == pytest.approx(1.0 + 0.5 * 0.0 - 0.5 + 0.1 * -0.5)
        assert rs[2].score == pytest.approx(0.0 + 0.5 * 1.0 + 0.1 * 0.0)
        assert rs[1].details["terms"] == pytest.approx({"math": 1.0, "format": 0.0, "overlong": -0.5, "kimi_length": -0.5})
    finally:
        h.shutdown()


def test_cache_and_metrics(hub):
    samples = [_math("31", "31", id=k) for k in range(3)]  # same content, extra fields ignored
    before = hub.metrics()["cache_hits"]
    hub.score(samples)
    hub.score(samples)
    m = hub.metrics()
    assert m["cache_hits"] - before >= 3
    assert m["items"] > 0 and m["items_per_s"] > 0 and m["replicas"] == 2
    assert 0 <= m["latency_ms_p50"] <= m["latency_ms_p95"] <= m["latency_ms_p99"]


def test_hub_inside_another_actor_and_async_groups(hub):
    import ray

    @ray.remote(num_cpus=0)
    class Rollout:
        def __init__(self, hub):
            self.hub = hub

        def run(self, groups):
            ref = self.hub.score_groups_async(groups)  # overlaps whatever the actor does next
            return [[r.score for r in g] for g in ray.get(ref)]

    actor = Rollout.remote(hub)
    groups = [[_math(str(g), str(g if i % 2 == 0 else g + 1)) for i in range(4)] for g in range(40)]
    scores = ray.get(actor.run.remote(groups))  # 160 samples: split over both replicas
    assert scores == [[1.0, 0.0, 1.0, 0.0]] * 40
    ray.kill(actor)


@pytest.fixture(scope="module")
def scorer():
    """One replica's scorer in this process, its math workers real processes."""
    from rewards.config import RewardsConfig
    from rewards.scorer import Scorer

    s = Scorer(RewardsConfig(timeout_s=3.0, cache_size=0, max_answer_chars=10_000))
    s.math_pool.active.wait_ready()
    s.math_pool.spare.wait_ready()
    yield s
    s.close()


def test_a_worker_killed_from_outside_masks_its_item(scorer):
    """A kill the response did not cause (SIGKILL from outside, CPU to spare)
    is masked, on the first run and on the lone second run alike; the item
    after it in the batch is scored."""
    import os
    import signal
    import threading
    import time

    pool = scorer.math_pool
    killed: list[int] = []

    def killer() -> None:  # kill each worker that works on the batch, a second after it starts
        while len(killed) < 2:
            pid = pool.active.proc.pid
            if pid not in killed:
                time.sleep(1.0)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.02)

    before = dict(retried=scorer.metrics.retried, errors=scorer.metrics.errors,
                  content_failures=scorer.metrics.content_failures)
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    hung, beside = scorer.score_items([_math("1", "(10^{10})!"), _math("0.5", r"\frac{1}{2}")])
    thread.join(timeout=30)
    assert len(killed) == 2 and killed[0] != killed[1]
    assert hung.masked and hung.mask_reason == "error" and hung.details["retried"] is True
    assert "killed from outside (SIGKILL) with CPU to spare" in hung.details["error"]
    assert "checker_failure" not in hung.details
    assert beside.score == 1.0 and not beside.masked
    m = scorer.metrics
    assert (m.retried - before["retried"], m.errors - before["errors"],
            m.content_failures - before["content_failures"]) == (1, 1, 0)
    # the pool carries on with fresh workers
    assert [r.score for r in scorer.score_items([_math("0.25", r"\frac{1}{4}"), _math("2", "3")])] == [1.0, 0.0]


def test_long_integers_score_like_short_ones(scorer):
    """4,400 digits, past Python's int/str guard, as reference and as answer
    (max_answer_chars raised): right 1, wrong 0, whether the reference is a
    string or an int; the slow path (math-verify in the worker) reads them too."""
    digits = "7" * 4400
    as_int = 7 * (10**4400 - 1) // 9
    power = "1" + "0" * 4400
    results = scorer.score_items([
        _math(digits, digits), _math(digits, digits[:-1] + "8"), _math(digits, "7"), _math(digits, "0" + digits),
        _math(as_int, digits), _math(as_int, digits + "7"),
        _math(power, "10^{4400}"), _math(power, "10^{4399}"),
    ])
    assert [r.score for r in results] == [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert not any(r.masked for r in results)


def test_a_reference_at_fault_is_masked_not_blamed_on_the_response(scorer):
    """The dataset's fault, not the response's: a reference math-verify cannot
    parse is masked at once; one that hangs every comparison (checked alone on
    the second run, against "0") is masked, and the other samples of the same
    reference are masked without a second run of their own."""
    hang = "9^{9^{9^9}}"
    before = scorer.metrics.retried
    unparsed, first, second, good = scorer.score_items(
        [_math("}{", "x+1"), _math(hang, "1234"), _math(hang, "x+1"), _math("0.5", r"\frac{1}{2}")])
    assert unparsed.masked and "reference answer '}{' cannot be parsed" in unparsed.details["error"]
    assert "retried" not in unparsed.details
    assert first.mask_reason == "timeout" and first.details["retried"] is True
    assert f"reference answer {hang!r} cannot be checked: the checker used its 3 CPU seconds" in first.details["error"]
    assert second.mask_reason == "timeout" and second.details["error"] == first.details["error"]
    assert "retried" not in second.details and "checker_failure" not in second.details
    assert good.score == 1.0
    assert scorer.metrics.retried - before == 1
    # a later batch: no run at all for the known reference
    (again,) = scorer.score_items([_math(hang, "5")])
    assert again.details["error"] == first.details["error"]

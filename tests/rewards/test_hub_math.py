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


def test_pathological_inputs_time_out_while_others_flow(hub):
    import ray

    nested = "(" * 2000 + "1" + ")" * 2000
    tower = "9^{9^{9^{9}}}"
    giant = "+".join(f"x^{{{i}}}" for i in range(800))
    megabyte = "la " * 350_000
    bad = [_math("1", tower), _math("1", nested), _math("2", giant),
           {"kind": "math", "response": megabyte, "answer": "1"},
           _math("1", "1+" * 600_000 + "1")]
    bad_ref = hub.score_groups_async([[s] for s in bad])
    good = [_math(str(n), str(n)) for n in range(40)] + [_math("0.5", r"\frac{1}{2}")]
    good_results = hub.score(good)  # sent while the pathological batch is being killed item by item
    assert [r.score for r in good_results] == [1.0] * len(good)
    bad_results = [g[0] for g in ray.get(bad_ref)]
    assert [r.score for r in bad_results] == [0.0] * len(bad)
    assert bad_results[0].details["timeout"] is True  # GMP power tower: only a kill stops it
    assert bad_results[3].details["correct"] is False  # a megabyte without an answer
    assert "longer than" in bad_results[4].details["note"]
    # the replica that killed its worker still scores, including the slow path
    after = hub.score([_math("0.25", r"\frac{1}{4}"), _math("2", "3")] * 4)
    assert [r.score for r in after] == [1.0, 0.0] * 4
    assert hub.metrics()["timeouts"] >= 1


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

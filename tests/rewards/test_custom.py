"""Your own reward function (rewards.custom, rewards.custom_call) in each shape
users have, and the reasoning-gym kind that runs the same way: values reach
the reward, None masks, a function that raises or hangs is a verdict of 0
after its lone second run, a bad target is one line before anything starts."""
from __future__ import annotations

import textwrap
import time

import pytest

from core.errors import UserError
from rewards.config import RewardsConfig

FUNCTIONS = '''
def per_sample(prompt, response, answer, metadata):
    # the value depends on every argument, so a wrong one shows
    return float(response.count(answer)) + metadata.get("bonus", 0.0) + (0.5 if prompt == "q?" else 0.0)

def trl_style(prompts, completions, answer, level, **kwargs):
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [float(a in t) * lv for t, a, lv in zip(texts, answer, level)]

def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    return {"score": (ground_truth in solution_str) * extra_info["scale"] + (data_source == "openai/gsm8k")}

def raises(prompt, response, answer, metadata):
    raise ValueError("cannot read " + response[:10])

def none(prompt, response, answer, metadata):
    return None

def hangs(prompt, response, answer, metadata):
    while True:
        pass

def chatty(prompt, response, answer, metadata):
    print("a function that prints must not break the frames")
    return 0.25

def not_a_number(prompt, response, answer, metadata):
    return "high"
'''
NAMES = ("per_sample", "trl_style", "compute_score", "raises", "none", "hangs", "chatty", "not_a_number")


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    from rewards.scorer import Scorer

    folder = tmp_path_factory.mktemp("user_code")
    (folder / "my_rewards.py").write_text(textwrap.dedent(FUNCTIONS))
    # a file target, as verl names its custom_reward_function
    cfg = RewardsConfig(custom={n: f"{folder / 'my_rewards.py'}:{n}" for n in NAMES}, timeout_s=1.0,
                        cache_size=0).with_custom_checked()
    s = Scorer(cfg)
    yield s
    s.close()


def _sample(kind, response="x 42 y 42", answer="42", prompt="q?", meta=None):
    return {"kind": kind, "response": response, "answer": answer, "prompt": prompt, "meta": meta or {}}


def test_shapes_are_read_from_signatures(scorer):
    shapes = {name: c.shape for name, c in scorer.cfg.custom.items()}
    assert shapes["per_sample"] == "sample" and shapes["trl_style"] == "trl" and shapes["compute_score"] == "verl"


def test_each_shape_gets_its_arguments(scorer):
    samples = [
        _sample("per_sample", meta={"bonus": 0.25}),  # 2 occurrences + 0.25 + 0.5
        _sample("trl_style", meta={"level": 3.0}),
        _sample("trl_style", response="no", meta={"level": 3.0}),
        _sample("trl_style", prompt=[{"role": "user", "content": "q?"}], meta={"level": 2.0}),  # chat completions
        _sample("compute_score", meta={"data_source": "openai/gsm8k", "extra_info": {"scale": 0.5}}),
        _sample("compute_score", response="none", meta={"data_source": "other", "extra_info": {"scale": 0.5}}),
    ]
    results = scorer.score_items(samples)
    assert [r.score for r in results] == [2.75, 3.0, 0.0, 2.0, 1.5, 0.0]
    assert not any(r.masked for r in results)
    assert [r.details["correct"] for r in results] == [True, True, False, True, True, False]


def test_raising_and_hanging_functions_are_verdicts_of_zero(scorer):
    t0 = time.monotonic()
    raised, hung, odd = scorer.score_items([_sample("raises"), _sample("hangs"), _sample("not_a_number")])
    for r in (raised, hung, odd):
        assert (r.score, r.masked, r.details["correct"], r.details["retried"]) == (0.0, False, False, True)
    assert "reward function 'raises'" in raised.details["checker_failure"]
    assert "ValueError: cannot read x 42 y 42" in raised.details["checker_failure"]
    assert hung.details["timeout"] and "CPU seconds" in hung.details["checker_failure"]
    assert "returned str" in odd.details["checker_failure"]
    assert time.monotonic() - t0 < 30  # a hang costs its budget twice, not the test's patience


def test_none_masks_and_printing_is_harmless(scorer):
    before = scorer.metrics.snapshot()["errors"]
    masked, chatty = scorer.score_items([_sample("none"), _sample("chatty")])
    assert masked.masked and masked.details["error"] == "reward function 'none' returned None"
    assert scorer.metrics.snapshot()["errors"] == before + 1
    assert (chatty.score, chatty.masked) == (0.25, False)


def test_a_listed_custom_term_is_added_to_every_sample(tmp_path, monkeypatch):
    from rewards.scorer import Scorer

    (tmp_path / "extra_terms.py").write_text(textwrap.dedent(FUNCTIONS))
    monkeypatch.syspath_prepend(str(tmp_path))  # a module target, found on the driver's path
    cfg = RewardsConfig(custom={"per_sample": "extra_terms:per_sample", "none": "extra_terms:none"},
                        terms={"math": 1.0, "per_sample": 0.5}, cache_size=0).with_custom_checked()
    assert cfg.custom["per_sample"].python_path == str(tmp_path)
    s = Scorer(cfg)
    try:
        right, wrong = s.score_items([{"kind": "math", "response": r"\boxed{42}", "answer": "42", "prompt": "q"},
                                      {"kind": "math", "response": r"\boxed{41}", "answer": "42", "prompt": "q"}])
    finally:
        s.close()
    # per_sample counts "42" in the response: once in \boxed{42}, never in \boxed{41}
    assert (right.details["terms"], right.score) == ({"math": 1.0, "per_sample": 1.0}, 1.5)
    assert (wrong.details["terms"], wrong.score) == ({"math": 0.0, "per_sample": 0.0}, 0.0)


@pytest.mark.parametrize("target, says", [
    ("no_such_module_here:f", "cannot import no_such_module_here (ModuleNotFoundError"),
    ("rewards.math:no_such_function", "rewards.math has no function 'no_such_function'"),
    ("/nowhere/file.py:f", "file /nowhere/file.py does not exist"),
    ("rewards.math:verify_answer", "fits no shape"),
])
def test_a_bad_target_is_one_line_naming_it(target, says):
    with pytest.raises(UserError) as err:
        RewardsConfig(custom={"mine": target}).with_custom_checked()
    line = str(err.value)
    assert "\n" not in line and line.startswith("rewards.custom.mine: ") and says in line


def test_config_rules():
    with pytest.raises(ValueError, match="not 'package.module:function'"):
        RewardsConfig(custom={"mine": "just_a_module"})
    with pytest.raises(ValueError, match="not a built-in kind"):
        RewardsConfig(custom={"math": "a.b:c"})
    with pytest.raises(ValueError, match="unknown reward kind"):
        RewardsConfig(terms={"mine": 1.0})
    assert RewardsConfig(custom={"mine": "a.b:c"}, terms={"mine": 0.5}).custom["mine"].function == "a.b:c"


def test_reasoning_gym_kind_uses_the_library_scorer():
    import reasoning_gym

    from rewards.scorer import Scorer

    entries = list(reasoning_gym.create_dataset("basic_arithmetic", size=3, seed=7))
    s = Scorer(RewardsConfig(cache_size=0))
    try:
        samples = [{"kind": "reasoning_gym", "response": f"so <answer>{e['answer']}</answer>",
                    "answer": e["answer"], "meta": {"reasoning_gym": e}} for e in entries]
        samples.append({"kind": "reasoning_gym", "response": "<answer>no idea</answer>",
                        "answer": entries[0]["answer"], "meta": {"reasoning_gym": entries[0]}})
        samples.append({"kind": "reasoning_gym", "response": entries[0]["answer"],  # no tags: no answer
                        "answer": entries[0]["answer"], "meta": {"reasoning_gym": entries[0]}})
        samples.append({"kind": "reasoning_gym", "response": "<answer>1</answer>", "answer": "1", "meta": {}})
        results = s.score_items(samples)
    finally:
        s.close()
    assert [r.score for r in results[:5]] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert [r.details["correct"] for r in results[:5]] == [True, True, True, False, False]
    assert results[5].masked  # no entry: the dataset's fault, not a verdict


def test_a_hub_replica_reaches_user_code_shipped_by_ray(ray_local, tmp_path, monkeypatch):
    """The replica is another process, maybe on another node: the user's code
    travels with Ray (runtime_env py_modules), so the replica's workers still
    import it after the driver's folder is gone, as on a node that never had it."""
    from rewards.hub import start_hub

    user = tmp_path / "user"
    (user / "hub_pkg").mkdir(parents=True)
    (user / "hub_pkg" / "__init__.py").write_text("")
    (user / "hub_pkg" / "scores.py").write_text(textwrap.dedent(FUNCTIONS))
    (user / "hub_file_rewards.py").write_text(textwrap.dedent(FUNCTIONS))
    monkeypatch.syspath_prepend(str(user))
    hub = start_hub(RewardsConfig(replicas=1, replica_cpus=0.25, custom={
        "mine": "hub_pkg.scores:per_sample", "file": f"{user / 'hub_file_rewards.py'}:chatty"}))
    try:
        user.rename(tmp_path / "gone")  # the driver's copy leaves before any worker imports it
        (mine, file), = hub.score_groups([[_sample("mine", meta={"bonus": 1.0}), _sample("file")]])
    finally:
        hub.shutdown()
    assert (mine.score, mine.masked) == (3.5, False)
    assert (file.score, file.masked) == (0.25, False)


def test_reasoning_gym_kind_reads_the_answer_pattern_when_set():
    """A base that answers in prose: with rewards.answer_pattern the last match
    (here the last integer) is the answer the library scores; the tags are not needed."""
    import reasoning_gym

    from rewards.scorer import Scorer

    e = list(reasoning_gym.create_dataset("chain_sum", size=1, seed=5, min_terms=2, max_terms=2))[0]
    s = Scorer(RewardsConfig(cache_size=0, answer_pattern=r"(-?\d+)"))
    try:
        right, wrong, tagged = s.score_items([
            {"kind": "reasoning_gym", "response": f"The final answer is {e['answer']}.", "meta": {"reasoning_gym": e}},
            {"kind": "reasoning_gym", "response": f"It is {e['answer']}, no, 100000.", "meta": {"reasoning_gym": e}},
            {"kind": "reasoning_gym", "response": f"<answer>{e['answer']}</answer>", "meta": {"reasoning_gym": e}}])
    finally:
        s.close()
    assert (right.score, wrong.score, tagged.score) == (1.0, 0.0, 1.0)


def test_a_function_that_does_not_import_on_the_replica_masks_and_recovers(tmp_path):
    """The driver found the function, the replica's node does not have it (a
    path that is not shared): each batch is masked with the reason, none crashes."""
    from rewards.scorer import Scorer

    (tmp_path / "gone_rewards.py").write_text(textwrap.dedent(FUNCTIONS))
    cfg = RewardsConfig(custom={"mine": f"{tmp_path / 'gone_rewards.py'}:per_sample"}).with_custom_checked()
    (tmp_path / "gone_rewards.py").unlink()
    s = Scorer(cfg)
    try:
        first = s.score_items([_sample("mine")])[0]
        second = s.score_items([_sample("mine", response="again")])[0]
    finally:
        s.close()
    for r in (first, second):
        assert r.masked and "gone_rewards.py" in r.details["error"] and "does not exist" in r.details["error"]


def test_a_sample_masked_by_an_added_term_is_not_cached(tmp_path, monkeypatch):
    from rewards.scorer import Scorer

    (tmp_path / "masking_terms.py").write_text(textwrap.dedent(FUNCTIONS))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = RewardsConfig(custom={"none": "masking_terms:none"}, terms={"math": 1.0, "none": 1.0},
                        cache_size=100).with_custom_checked()
    s = Scorer(cfg)
    try:
        sample = {"kind": "math", "response": r"\boxed{42}", "answer": "42", "prompt": "q"}
        first, again = s.score_items([sample])[0], s.score_items([dict(sample)])[0]
    finally:
        s.close()
    assert first.masked and again.masked
    assert s.metrics.snapshot()["cache_hits"] == 0  # a failure is scored afresh, never served from the cache

"""Failures are never a reward (rewards.types.RewardResult.masked): a reward
that errored or timed out leaves its sample without a reward, outside its
group's baseline and the loss, and counted; judge compute has its own ledger
columns.

Unit tests build groups by hand only where the point is the arithmetic
(advantages over the scored members, per-prompt eval counts); the real-run
test injects failures the hub really produces: rows of a reward kind the hub
does not know (an error for every sample) and rows whose reference answer
hangs math-verify (`9^{9^{9^9}}`: a real per-item timeout of the math
worker).
"""
import json

import pytest
import torch

from rewards.config import RewardsConfig
from rewards.types import RewardResult, failed
from rl.algo.batch import build_train_batch
from rl.algo.config import AlgoConfig
from rl.monitor.judge_compute import JudgeMeter
from rl.monitor.ledger import ComputeLedger
from rl.step_metrics import eval_counts, eval_metrics, judge_agreement, reward_failures
from rollout.jobs import Job, JobRun
from rollout.types import Group, RolloutBatch, Sample

M = None  # a masked sample's reward


def _sample(reward, n=2, why="error"):
    return Sample(token_ids=[7] * n, logprobs=[-0.5] * n, versions=[0] * n, finish_reason="stop",
                  reward=reward, reward_masked=None if reward is not M else why,
                  correct=None if reward is M else reward == 1.0)


def _group(rewards, kind="math", why="error"):
    return Group(prompt={"prompt": "x", "kind": kind}, prompt_ids=[5],
                 samples=[_sample(r, why=why) for r in rewards])


def test_the_one_rule_for_a_failed_result():
    assert failed("judge said nothing parseable").mask_reason == "error"
    assert failed("timeout after 5s", timeout=True).mask_reason == "timeout"
    # the math checker's timeout carries both, as rewards.scorer writes it
    assert RewardResult(0.0, {"correct": False, "timeout": True, "error": "timeout after 5s"}).masked
    # a code program that ran past its sandbox limit failed its tests: a verdict, scored
    verdict = RewardResult(0.5, {"correct": False, "timeout": True, "passed": 1, "total": 2})
    assert not verdict.masked and verdict.mask_reason is None
    assert not RewardResult(0.0, {"correct": False, "timeout": False, "note": "no answer found"}).masked


def test_advantages_use_only_the_scored_members():
    """Group 0: rewards 1, -, 0, 1 (one masked); group 1: 1, -, -, 0; group 2
    has one scored sample and group 3 none: no baseline, dropped."""
    groups = [_group([1.0, M, 0.0, 1.0]), _group([1.0, M, M, 0.0], why="timeout"),
              _group([M, M, M, 1.0]), _group([M, M, M, M])]
    cfg = AlgoConfig(advantage="group_std", aggregation="token_mean")
    b = build_train_batch(groups, cfg, pad_id=0)
    assert b.size == 8  # groups 2 and 3 left out; masked rows stay, as context
    # group 0: mean 2/3, centred (1/3, -2/3, 1/3), std (n-1) sqrt((1/9 + 4/9 + 1/9) / 2) = 0.577350
    # group 1: mean 1/2, centred (1/2, -1/2), std sqrt(0.5 / 1) = 0.707107
    want = [0.333333 / 0.577350, 0.0, -0.666667 / 0.577350, 0.333333 / 0.577350,
            0.5 / 0.707107, 0.0, 0.0, -0.5 / 0.707107]
    assert b.advantages_b.tolist() == pytest.approx(want, rel=1e-5)
    # masked samples carry a zero loss mask and zero weight; 5 scored rows x 2 tokens share token_mean
    trained = [1, 0, 1, 1, 1, 0, 0, 1]
    assert b.mask_bt[:, 1:].sum(dim=1).tolist() == [2.0 * t for t in trained]
    torch.testing.assert_close(b.token_weights_bt[:, 1:], torch.tensor(trained, dtype=torch.float32)[:, None]
                               .expand(8, 2) / 10)
    assert b.min_version_b.tolist() == [0, -1, 0, 0, 0, -1, -1, 0]
    # batch_std: centred scored values 1/3, -2/3, 1/3, 1/2, -1/2 (mean 0), std sqrt((6/9 + 1/2) / 4) = 0.540062
    bs = build_train_batch(groups, AlgoConfig(advantage="batch_std"), pad_id=0)
    assert bs.advantages_b.tolist() == pytest.approx(
        [0.333333 / 0.540062, 0.0, -0.666667 / 0.540062, 0.333333 / 0.540062,
         0.5 / 0.540062, 0.0, 0.0, -0.5 / 0.540062], rel=1e-5)


def test_groups_without_a_baseline_are_dropped_with_the_filter_off():
    cfg = AlgoConfig(zero_variance_filter=False, advantage="no_std")
    # the lone scored sample has no baseline; the zero-variance group is kept (tokens, A = 0)
    b = build_train_batch([_group([M, 1.0, M]), _group([1.0, 1.0, M])], cfg, pad_id=0)
    assert b.size == 3 and b.advantages_b.tolist() == [0.0, 0.0, 0.0]
    assert b.mask_bt.sum(dim=1).tolist() == [2.0, 2.0, 0.0]
    assert build_train_batch([_group([M, 1.0, M]), _group([M, M, M])], cfg, pad_id=0) is None


def test_failures_are_counted_per_kind():
    groups = [_group([1.0, M, 0.0, M], why="timeout"), _group([M, M, M, M], kind="nope"),
              _group([1.0, 0.0, 1.0, 0.0])]
    out = reward_failures(groups)
    assert (out["reward/masked"], out["reward/errors"], out["reward/timeouts"]) == (6, 4, 2)
    assert out["reward/masked_fraction"] == pytest.approx(6 / 12)
    assert (out["reward/math/masked"], out["reward/math/timeouts"], out["reward/math/errors"]) == (2, 2, 0)
    assert (out["reward/nope/errors"], out["reward/nope/masked_fraction"]) == (4, 1.0)


def test_a_failed_judge_counts_under_the_judge_kind():
    """Math rows with a genrm term: one judged fine, one whose judge timed out
    (rewards.judge.kinds.judge_failure writes details.judge), one math error."""
    ok, hung, broken = _sample(1.0), _sample(M, why="timeout"), _sample(M)
    ok.reward_details = {"judge": "genrm", "terms": {"math": 1.0, "genrm": 0.8}}
    hung.reward_details = {**failed("judge timed out", timeout=True).details, "judge": "genrm"}
    broken.reward_details = failed("math worker died").details
    out = reward_failures([Group(prompt={"prompt": "x", "kind": "math"}, prompt_ids=[5],
                                 samples=[ok, hung, broken])])
    assert (out["reward/masked"], out["reward/timeouts"], out["reward/errors"]) == (2, 1, 1)
    assert (out["reward/genrm/timeouts"], out["reward/genrm/masked_fraction"]) == (1, 0.5)  # of 2 judged
    assert (out["reward/math/errors"], out["reward/math/timeouts"], out["reward/math/masked"]) == (1, 0, 1)


def test_judge_scores_against_the_verifier_by_hand():
    """Five math rows with a genrm term (details as the hub writes them: the
    verifier's `correct` and `extracted`, the judge's score in `terms`), one masked."""
    def judged(correct, extracted, p_yes):
        s = _sample(1.0 if correct else 0.0)
        s.reward_details = {"correct": correct, "extracted": extracted, "judge": "genrm",
                            "terms": {"math": 0.0, "genrm": p_yes}}
        return s
    hung = _sample(M, why="timeout")
    hung.reward_details = {**failed("judge timed out", timeout=True).details, "judge": "genrm"}
    samples = [judged(True, "12", 0.9), judged(True, "12", 0.4), judged(False, "13", 0.7),
               judged(False, "14", 0.2), judged(False, None, 0.6), hung]
    out = judge_agreement([Group(prompt={"prompt": "5+7=", "kind": "math"}, prompt_ids=[5], samples=samples)])
    assert out["reward/genrm/score_right"] == pytest.approx(0.65)
    assert out["reward/genrm/score_wrong"] == pytest.approx(0.45)
    assert out["reward/genrm/score_no_answer"] == pytest.approx(0.6)
    assert out["reward/genrm/no_answer_rate"] == pytest.approx(1 / 5)  # of the 5 scored
    assert out["reward/genrm/fooled_rate"] == pytest.approx(2 / 3)  # 0.7 and 0.6 of 3 verifier-wrong
    assert judge_agreement([_group([1.0, 0.0])]) == {}  # no judge term: nothing logged


def test_masked_eval_samples_are_left_out_of_the_pass_rate():
    # prompt 0: 1 of 3 scored right (one masked); prompt 1: 2 of 4; prompt 2: nothing scored
    batch = RolloutBatch(step=0, groups=[_group([1.0, 0.0, M, 0.0]), _group([1.0, 0.0, 1.0, 0.0]),
                                         _group([M, M, M, M])])
    c = eval_counts(batch)
    assert c["scored"] == [3, 4] and c["correct_scored"] == [1, 2] and c["masked"] == 5
    assert c["prompts_unscored"] == 1
    assert c["correct"] == pytest.approx([4 / 3, 2])  # rescaled to k = 4: what the fit reads as correct / k
    assert c["pass_rate"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert c["pass_rate"] == pytest.approx(sum(x / 4 for x in c["correct"]) / 2)


def test_an_evaluation_with_nothing_scored_has_no_pass_rate():
    """Every reward failed: the evaluation measured nothing, so it logs no
    pass rate (a 0 would enter the curve and the fit as a real point)."""
    batch = RolloutBatch(step=0, groups=[_group([M, M, M, M]), _group([M, M, M, M])])
    assert eval_counts(batch)["pass_rate"] is None
    m = eval_metrics(batch)
    assert "eval/pass_rate" not in m and "eval/pass_at_k" not in m
    assert m["eval/masked"] == 8 and m["eval/prompts_unscored"] == 2


@pytest.fixture(scope="module")
def scorer():
    from rewards.scorer import Scorer

    s = Scorer(RewardsConfig(timeout_s=2.0, cache_size=0))
    yield s
    s.close()


def test_a_real_checker_timeout_is_masked_and_counted(scorer):
    """`9^{9^{9^9}}` hangs math-verify inside GMP. As a response, it is its own
    fault: after a second run alone under a CPU limit it scores 0, unmasked
    (rewards.types' rule). As the reference answer, it is not the response's
    fault: the sample gets no reward and is counted as a timeout."""
    tower = "9^{9^{9^9}}"
    items = [{"kind": "math", "response": f"so \\boxed{{{tower}}}", "answer": "2"},
             {"kind": "math", "response": "\\boxed{2}", "answer": tower},
             {"kind": "math", "response": "\\boxed{12}", "answer": "12"},
             {"kind": "bogus", "response": "\\boxed{1}", "answer": "1"}]
    results = scorer.score_items(items)
    assert [r.mask_reason for r in results] == [None, "timeout", None, "error"]
    assert [r.score for r in results[:3]] == [0.0, 0.0, 1.0] and results[0].details["checker_failure"]
    assert (scorer.metrics.timeouts, scorer.metrics.errors, scorer.metrics.content_failures) == (1, 1, 1)
    # the copy into the sample (rollout.jobs.JobRun.group), on finished samples
    job = Job(job_id="j", step=0, prompts=[{"prompt": "x", "answer": "2"}], prompt_ids=[[5]], n=4,
              temperature=1.0, max_tokens=4)
    run = JobRun(job, tokenizer=None, context=16, version=0)
    run.slots = [[_sample(0.0) for _ in range(4)]]
    group = run.group(0, results)
    assert [s.reward for s in group.samples] == [0.0, None, 1.0, None]
    assert [s.reward_masked for s in group.samples] == [None, "timeout", None, "error"]
    assert [s.trainable_mask() for s in group.samples] == [[True, True], [False, False], [True, True], [False, False]]
    out = reward_failures([group])
    assert (out["reward/masked"], out["reward/timeouts"], out["reward/errors"]) == (2, 1, 1)


def test_judge_compute_columns_and_the_genrm_accounting():
    ledger, meter = ComputeLedger(), JudgeMeter()
    ledger.add(device_seconds=10.0, gen_tokens=800, train_tokens=900, gen_flops=1.0, train_flops=2.0)
    # the hub's cumulative judge counters after step 1, then after step 2 (a restarted engine starts at 0)
    ledger.add_judge(samples=16, usage=meter.spent({"judge_requests": 32, "judge_generated_tokens": 64,
                                                    "judge_prompt_tokens": 3200, "judge_core_seconds": 4.0}))
    ledger.add(device_seconds=10.0, gen_tokens=800, train_tokens=900, gen_flops=1.0, train_flops=2.0)
    ledger.add_judge(samples=16, usage=meter.spent({"judge_requests": 16, "judge_generated_tokens": 32,
                                                    "judge_prompt_tokens": 1600, "judge_core_seconds": 1.0}))
    t = ledger.totals()
    assert (t["compute/judge_requests"], t["compute/judge_tokens"], t["compute/judge_prompt_tokens"]) == (48, 96, 4800)
    assert t["compute/judge_core_seconds"] == pytest.approx(5.0)
    # S = 1600 solver tokens over 32 samples: T_solve = 50; V = 48 / 32 = 1.5; T_verify = 96 / 48 = 2
    assert t["compute/genrm_verifications"] == pytest.approx(1.5)
    assert t["compute/genrm_lambda"] == pytest.approx(2 / 50)
    assert t["compute/genrm_paper_compute"] == pytest.approx(1600 * (1 + 0.04 * 1.5))  # = S + judge tokens
    assert t["compute/genrm_paper_compute"] == pytest.approx(1600 + 96)
    # a checkpoint from before the judge columns loads with them at 0
    old = {k: v for k, v in ledger.state_dict().items() if not k.startswith(("judge_", "gen_samples"))}
    again = ComputeLedger()
    again.load_state_dict(old)
    assert again.totals()["compute/judge_tokens"] == 0 and again.totals()["compute/gen_tokens"] == 1600
    assert again.totals()["compute/genrm_paper_compute"] == 1600


# ---- a real run: vLLM rollout, the real hub, FSDP2 learner --------------------------------------

def _rows(tmp_path):
    """Training prompts in curriculum order (meta.difficulty), 4 per step:
    step 1 has one row of an unknown reward kind (4 errors), one whose answer
    hangs math-verify (4 timeouts) and two ordinary rows; step 2 has three
    unknown-kind rows and one hanging row: all 16 samples masked."""
    from rl.data.arith import make_prompts

    base = make_prompts(12, seed=3)
    plan = ["nope", "hang", "ok", "ok", "nope", "nope", "nope", "hang"]
    train = []
    for i, (row, what) in enumerate(zip(base, plan)):
        r = {"prompt": row["prompt"], "answer": row["answer"], "kind": "math", "meta": {"difficulty": i}}
        if what == "nope":
            r["kind"] = "nope"
        elif what == "hang":
            r["answer"] = "9^{9^{9^9}}"
        train.append(r)
    val = [{"prompt": r["prompt"], "answer": r["answer"], "kind": "nope" if i == 0 else "math"}
           for i, r in enumerate(base[8:12])]
    for name, rows in (("train.jsonl", train), ("val.jsonl", val)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "train.jsonl", tmp_path / "val.jsonl"


@pytest.mark.slow
def test_a_real_run_masks_and_counts_failed_rewards(ray_local, tmp_path, capfd):
    from rl.controller import Controller
    from rl.recipe import load_recipe

    train, val = _rows(tmp_path)
    opts = ["run.wandb_mode=disabled", "run.progress=false", "monitor.enabled=false", "run.steps=2",
            "eval.every=2", "eval.k=2", "learner.cpus_per_rank=0.5", "rewards.replica_cpus=0.25",
            "pipeline.max_off_policy_steps=0", "rollout.prompts_per_step=4", "rollout.samples_per_prompt=4",
            "rollout.temperature=0.5", "rewards.timeout_s=3", "data.task=file", f"data.train_path={train}",
            f"data.val_path={val}", "data.sampling=curriculum", "data.curriculum_warmup_epochs=5",
            "run.checkpoint_every=0", "algo.zero_variance_filter=false"]
    run_dir = tmp_path / "run"
    Controller(load_recipe("recipes/tiny-arith.yaml", opts), run_dir).run()
    rows = {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}
    one, two = rows[1], rows[2]
    # step 1: the unknown kind fails every sample, the hanging answer times out every sample
    assert (one["reward/masked"], one["reward/errors"], one["reward/timeouts"]) == (8, 4, 4)
    assert (one["reward/nope/errors"], one["reward/math/timeouts"], one["reward/math/errors"]) == (4, 4, 0)
    assert one["reward/masked_fraction"] == pytest.approx(0.5)
    # the two fully masked groups have no baseline: only the two ordinary prompts train
    assert (one["data/prompts_trained"], one["data/prompts_filtered"], one["train/skipped"]) == (2, 2, 0)
    # step 2: every sample masked; the step is logged as skipped, not dropped
    assert (two["reward/masked"], two["reward/errors"], two["reward/timeouts"]) == (16, 12, 4)
    assert two["train/skipped"] == 1 and two["fault/skipped_steps"] == 1 and two["data/prompts_trained"] == 0
    assert two["train/tokens_trained"] == 0
    err = capfd.readouterr().err
    assert "step 2 trained nothing: all 16 samples had no reward" in err
    assert "step 1: 8 of 16 samples have no reward (4 errors, 4 timeouts; above monitor.mask_warn=10%)" in err
    # evaluation: the unknown-kind prompt is left out, not counted wrong
    evals = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    for e in evals:
        assert e["masked"] == 2 and e["prompts_unscored"] == 1 and e["scored"] == [2, 2, 2]
        assert e["pass_rate"] == pytest.approx(sum(e["correct"]) / (2 * 3))
        assert e["pass_rate"] == pytest.approx(rows[e["step"]]["eval/pass_rate"])
    # no judge kinds: the judge columns are there and zero, and C = S
    assert two["compute/judge_tokens"] == 0 and two["compute/genrm_paper_compute"] == two["compute/gen_tokens"]

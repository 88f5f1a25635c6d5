"""`asymptote export long2short` (rl/export/long2short): the merge arithmetic
and the architecture check on small tensors and real folders; the shortest-
correct choice and the DPO pair rules on samples the real vLLM engine drew
from the tiny-arith-long base; each method end to end on the tiny task,
kept short (few prompts, few trainer steps, a 2-step RL run from a 2-step
source run).

One `Bench` (one in-process vLLM engine) serves every test that samples or
measures; the RL runs' rollout workers have engines of their own (Ray actors).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.errors import UserError
from rl.export.long2short import card
from rl.export.long2short.config import EvalSettings, MergeSettings, RLSettings, SampleSettings, TrainSettings
from rl.export.long2short.merge import pick_alpha
from rl.export.long2short.pairs import dpo_pairs, shortest_correct
from rl.export.long2short.weights import architecture_difference, average, check_same_architecture

ROOT = Path(__file__).resolve().parents[2]
EVAL = EvalSettings(prompts=16, k=2, max_new_tokens=128)
SAMPLE = SampleSettings(prompts=24, n=6, max_new_tokens=128, seed=3)
TRAIN = TrainSettings(steps=3, batch_size=8, lr=1e-4)


# ---- merge arithmetic and the architecture check --------------------------------------------------
def test_average_is_alpha_long_plus_one_minus_alpha_short():
    long = {"w": torch.tensor([[1.0, 2.0], [3.0, -4.0]]), "b": torch.tensor([8.0], dtype=torch.bfloat16)}
    short = {"w": torch.tensor([[5.0, 6.0], [-1.0, 0.0]]), "b": torch.tensor([0.0], dtype=torch.bfloat16)}
    got = average(long, short, 0.25)
    # 0.25*1 + 0.75*5 = 4, 0.25*2 + 0.75*6 = 5, 0.25*3 - 0.75 = 0, -1 + 0 = -1; 0.25*8 = 2
    assert torch.equal(got["w"], torch.tensor([[4.0, 5.0], [0.0, -1.0]]))
    assert got["b"].dtype == torch.bfloat16 and got["b"].item() == 2.0
    assert torch.equal(average(long, short, 1.0)["w"], long["w"])
    assert torch.equal(average(long, short, 0.0)["w"], short["w"])


def _save(path: Path, seed: int = 0, **arch) -> Path:
    from rl.base.config import ArchConfig
    from rl.base.model import build_model
    from rl.base.tokenizer import build_tokenizer

    tok = build_tokenizer()
    build_model(ArchConfig(**arch), tok, seed=seed).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_architecture_check(tmp_path, capsys):
    from rl.cli import main

    a, b = _save(tmp_path / "a", seed=0), _save(tmp_path / "b", seed=1)
    wide = _save(tmp_path / "wide", hidden_size=64, num_heads=2, num_kv_heads=2)
    deep = _save(tmp_path / "deep", num_layers=4)
    assert architecture_difference(a, b) is None  # other weights, same architecture
    assert architecture_difference(a, wide) == "config 'hidden_size' is 128 vs 64"
    assert architecture_difference(a, deep) == "config 'num_hidden_layers' is 3 vs 4"
    with pytest.raises(UserError, match="differ in architecture"):
        check_same_architecture(a, wide)
    capsys.readouterr()  # the saves' progress bars
    rc = main(["export", "long2short", str(a), str(tmp_path / "out"), "--method", "merge", "--short", str(wide)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "hidden_size" in err
    assert not (tmp_path / "out").exists()


def test_pick_alpha_and_pareto_front():
    before = {"accuracy": 0.40, "mean_tokens": 60.0}
    sweep = [{"alpha": 0.25, "accuracy": 0.30, "mean_tokens": 30.0},
             {"alpha": 0.5, "accuracy": 0.38, "mean_tokens": 40.0},
             {"alpha": 0.75, "accuracy": 0.41, "mean_tokens": 52.0}]
    assert pick_alpha(sweep, before, 0.03)["alpha"] == 0.5  # 0.38 is within 3 points, fewest tokens
    assert pick_alpha(sweep, before, 0.0)["alpha"] == 0.75
    assert pick_alpha(sweep[:2], {"accuracy": 0.9}, 0.03)["alpha"] == 0.5  # none within: most accurate
    pts = [(60.0, 0.40), (30.0, 0.30), (40.0, 0.38), (52.0, 0.41), (45.0, 0.35)]
    assert card.pareto_front(pts) == [(30.0, 0.30), (40.0, 0.38), (52.0, 0.41)]


# ---- selection rules -----------------------------------------------------------------------------
def _s(tokens: int, correct: bool) -> dict:
    return {"tokens": tokens, "correct": correct, "text": f"{tokens}{correct}"}


def test_pair_rules_by_hand():
    group = [_s(40, True), _s(30, True), _s(44, True), _s(45, True), _s(90, False), _s(30, True), _s(20, False)]
    chosen = shortest_correct(group)
    assert chosen is group[1]  # 30 tokens; the earlier of the two ties
    pairs = dpo_pairs(group, 1.5)
    # correct and >= 45 tokens (45 is exactly 1.5x), then the wrong ones, longest first
    assert [r["tokens"] for _, r in pairs] == [45, 90, 20]
    assert all(c is chosen for c, _ in pairs)
    assert [r["tokens"] for _, r in dpo_pairs(group, 1.5, max_pairs=2)] == [45, 90]
    assert dpo_pairs([_s(10, False), _s(12, False)]) == [] and shortest_correct([_s(10, False)]) is None


@pytest.fixture(scope="session")
def long_base():
    from rl.base.build import build_base

    return build_base("tiny-arith-long")


@pytest.fixture(scope="session")
def short_base():
    from rl.base.build import build_base

    return build_base("tiny-arith-short")


@pytest.fixture(scope="session")
def bench(long_base):
    from rl.export.long2short.bench import Bench

    b = Bench(long_base, max_new_tokens=128)
    yield b
    b.close()


@pytest.fixture(scope="session")
def drawn(bench, long_base):
    return bench.training_groups(long_base, SAMPLE)


@pytest.mark.full
def test_shortest_correct_and_pairs_on_real_samples(drawn, bench):
    from rl.data import arith

    rows, groups = drawn
    assert len(groups) == SAMPLE.prompts and all(len(g) == SAMPLE.n for g in groups)
    eos = bench.tokenizer.eos_token_id
    n_correct = 0
    for row, group in zip(rows, groups):
        for s in group:  # what the engine reported, read back independently
            assert s["correct"] == (s["finish_reason"] == "stop" and arith.is_correct(s["text"], row["answer"]))
            ids = bench.tokenizer(s["text"], add_special_tokens=False)["input_ids"]
            # re-tokenizing may merge sampled characters into a marker ("\\boxed{"), never split
            assert len(ids) <= s["tokens"], s["text"]
            if s["correct"]:  # a clean trace: its tokens are exactly the text's + EOS
                assert s["tokens"] == len(ids) + 1, s["text"]
        correct = [s for s in group if s["correct"]]
        n_correct += len(correct)
        best = shortest_correct(group)
        pairs = dpo_pairs(group, 1.5)
        if not correct:
            assert best is None and pairs == []
            continue
        assert best["correct"] and best["tokens"] == min(s["tokens"] for s in correct)
        rejected = [r for _, r in pairs]
        expected = [s for s in group if not s["correct"] or s["tokens"] >= 1.5 * best["tokens"]]
        assert sorted(map(id, rejected)) == sorted(map(id, expected))
    assert n_correct > 0


# ---- each method end to end ----------------------------------------------------------------------
def _check_export(out: Path, record: dict, bench, method: str) -> None:
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "long2short.json",
            "pareto.png"} <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "long2short.json").read_text())
    assert saved["method"] == method and saved["after"] == record["after"]
    assert bench.measure(out, EVAL) == record["after"]  # seeded: a fresh measurement agrees
    text = (out / "README.md").read_text()
    for m in ("before", "after"):
        assert f"| {m} | {record[m]['accuracy']:.3f} |" in text and f"{record[m]['mean_tokens']:.1f}" in text


@pytest.fixture(scope="session")
def trials(tmp_path_factory):
    return tmp_path_factory.mktemp("l2s") / "long2short.jsonl"


def _export(method, source, out, bench, trials, **kw):
    from rl.export.long2short.export import Settings, export_long2short

    settings = Settings(eval=EVAL, sample=SAMPLE, train=TRAIN, merge=MergeSettings(alphas=[0.5, 1.0]),
                        rl=kw.pop("rl", RLSettings()))
    return export_long2short(method, source, out, settings=settings, bench=bench, trials=trials, **kw)


@pytest.mark.full
def test_merge_end_to_end(bench, long_base, short_base, trials, tmp_path):
    record = _export("merge", long_base, tmp_path / "merge", bench, trials, short=str(short_base))
    _check_export(tmp_path / "merge", record, bench, "merge")
    sweep = {p["alpha"]: p for p in record["sweep"]}
    assert sweep[1.0]["accuracy"] == record["before"]["accuracy"]  # alpha 1 is the long model itself
    assert sweep[1.0]["mean_tokens"] == record["before"]["mean_tokens"]
    assert record["after"] == {k: v for k, v in pick_alpha(record["sweep"], record["before"], 0.03).items()
                               if k != "alpha"}


@pytest.mark.full
def test_shortest_rs_end_to_end(bench, long_base, drawn, trials, tmp_path):
    from rl.export.long2short.rs import sample_stats, sft_rows

    record = _export("shortest-rs", long_base, tmp_path / "rs", bench, trials)
    _check_export(tmp_path / "rs", record, bench, "shortest-rs")
    kept = sft_rows(*drawn)  # the same seeded samples the export drew
    assert record["data"]["prompts_kept"] == len(kept) > 0
    assert record["data"] == sample_stats(drawn[1], kept)
    for row in kept:  # each target is its prompt's shortest correct sample
        group = drawn[1][[r["prompt"] for r in drawn[0]].index(row["prompt"])]
        assert row["tokens"] == min(s["tokens"] for s in group if s["correct"])


@pytest.mark.full
def test_dpo_end_to_end(bench, long_base, drawn, trials, tmp_path):
    from rl.export.long2short.config import PairSettings
    from rl.export.long2short.dpo import pair_rows

    record = _export("dpo", long_base, tmp_path / "dpo", bench, trials)
    _check_export(tmp_path / "dpo", record, bench, "dpo")
    pairs = pair_rows(*drawn, PairSettings())
    assert record["data"]["pairs"] == len(pairs) > 0
    assert record["data"]["long_negatives"] == sum(p["kind"] == "long" for p in pairs)
    lines = [json.loads(x) for x in trials.read_text().splitlines()]
    assert [t["method"] for t in lines][-1] == "dpo"


SOURCE_RUN = ["run.progress=false", "run.steps=2", "run.checkpoint_every=1", "eval.every=1", "eval.prompts=8",
              "eval.k=2", "rollout.prompts_per_step=4", "rollout.samples_per_prompt=4", "learner.cpus_per_rank=0.5",
              "rewards.replica_cpus=0.25", "monitor.bootstrap=0", "run.wandb_mode=disabled",
              "run.keep_checkpoints=3"]


@pytest.fixture(scope="session")
def source_run(ray_local, long_base, tmp_path_factory):
    """A real 2-step run on the long base (max 128 tokens), evaluated and checkpointed every step."""
    from rl.controller import Controller
    from rl.recipe import load_recipe

    run_dir = tmp_path_factory.mktemp("source") / "run"
    recipe = load_recipe(ROOT / "recipes/tiny-arith.yaml", SOURCE_RUN + [
        f"model.base={long_base}", "rollout.max_new_tokens=128", "rollout.engine.max_model_len=160"])
    Controller(recipe, run_dir).run()
    return run_dir


@pytest.mark.full
def test_rl_end_to_end(bench, source_run, tmp_path):
    import yaml

    from rl.export.long2short.rl_recipe import eval_rows

    evals = eval_rows(source_run)
    have = sorted(int(p.name.split("_")[1]) for p in (source_run / "checkpoints").glob("step_*"))
    best = max(have, key=lambda s: (evals[s]["eval/pass_rate"] / evals[s]["eval/length_mean"],
                                    evals[s]["eval/pass_rate"], s))
    rl = RLSettings(recipe=str(ROOT / "recipes/long2short.yaml"),
                    overrides=[o for o in SOURCE_RUN if not o.startswith("run.keep")])
    out = tmp_path / "rl"
    record = _export("rl", source_run, out, bench, None, rl=rl)
    _check_export(out, record, bench, "rl")
    assert record["start"]["step"] == best and f"step {best}:" in record["chosen"]
    run_cfg = yaml.safe_load((tmp_path / "rl-run" / "config.yaml").read_text())
    assert Path(run_cfg["model"]["base"]) == (tmp_path / "rl-run-start" / f"run-step{best}").resolve()
    assert run_cfg["rewards"]["kimi_length"] > 0 and run_cfg["rollout"]["max_new_tokens"] == 64
    assert json.loads((out / "export.json").read_text())["step"] == 2  # the RL run's last step
    assert (source_run / "long2short.jsonl").is_file()  # a run's trials live in the run

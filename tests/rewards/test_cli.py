"""`asymptote reward score`: output lines are the input plus reward/details;
a bad line gets an error and the rest are still scored."""
from __future__ import annotations

import argparse
import json

from rewards.cli import register


def _run(argv) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_reward_score_file(tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"kind": "math", "response": r"\boxed{\frac{1}{2}}", "answer": "0.5", "id": "a"}),
        "{not json",
        json.dumps({"kind": "math", "response": r"\boxed{9^{9^{9^{9}}}}", "answer": "1", "id": "b"}),
        json.dumps({"kind": "code", "response": "```python\nprint(2)\n```", "tests": [{"input": "", "output": "2"}]}),
        json.dumps({"kind": "math", "response": "no box", "answer": "1"}),
    ]
    inp.write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("rewards:\n  timeout_s: 1.0\n")
    out = tmp_path / "out.jsonl"
    assert _run(["reward", "score", "--input", str(inp), "--output", str(out), "--config", str(cfg)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 5
    assert rows[0]["id"] == "a" and rows[0]["reward"] == 1.0 and rows[0]["details"]["correct"] is True
    assert "bad JSON" in rows[1]["details"]["error"] and rows[1]["reward"] == 0.0
    assert rows[2]["reward"] == 0.0 and rows[2]["details"]["timeout"] is True and rows[2]["id"] == "b"
    assert rows[3]["reward"] == 1.0
    assert rows[4]["reward"] == 0.0
    # no --output: the same lines on stdout
    assert _run(["reward", "score", "--input", str(inp), "--config", str(cfg)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5


def test_bad_config_is_one_line_user_error(tmp_path):
    import pytest

    from core.errors import UserError

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("rewards:\n  replicas: 1\n  colour: blue\n")
    inp = tmp_path / "in.jsonl"
    inp.write_text("")
    with pytest.raises(UserError, match="colour"):
        _run(["reward", "score", "--input", str(inp), "--config", str(cfg)])


def _score_subprocess(tmp_path, samples: list[dict], rewards_yaml: str) -> list[dict]:
    """`asymptote reward score` as a user runs it: a fresh process."""
    import subprocess
    import sys
    from pathlib import Path

    inp, out, cfg = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "cfg.yaml"
    inp.write_text("".join(json.dumps(s) + "\n" for s in samples))
    cfg.write_text(rewards_yaml)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "rl.cli", "reward", "score", "--input", str(inp),
                           "--output", str(out), "--config", str(cfg)],
                          cwd=root, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(x) for x in out.read_text().splitlines()]


def judge_yaml(model: str, terms: str, k: int = 2) -> str:
    return (f"rewards:\n  timeout_s: 5.0\n  terms: {terms}\n  judge:\n    model: {model}\n    replicas: 1\n"
            "    cpus_per_replica: 1.0\n    dtype: float32\n    max_model_len: 512\n    max_num_seqs: 16\n"
            "    timeout_s: 300\n"
            f"    grm: {{k: {k}, max_tokens: 160}}\n")


def test_reward_score_serves_judge_kinds(tmp_path, tmp_path_factory):
    """With `rewards.judge` in the config the CLI starts Ray and a judge engine,
    scores, and stops them: judge-kind samples get the judge's score (genrm:
    P(Yes), equal to the same model's P(Yes) computed here with transformers),
    not the 'no judge engines' mask."""
    import pytest
    import torch
    from transformers import AutoModelForCausalLM

    from rl.base.judge_eval import verify_p_yes
    from rl.base.judge_tokenizer import load_judge_tokenizer
    from tests.rewards.test_judge_engine import BAD, GOOD, QUESTION, _judge_folder

    model = _judge_folder(tmp_path_factory)
    samples = [{"kind": "genrm", "prompt": QUESTION, "response": GOOD, "id": 0},
               {"kind": "genrm", "prompt": QUESTION, "response": BAD, "id": 1},
               {"kind": "math", "prompt": QUESTION, "response": GOOD, "answer": "46", "id": 2},
               {"kind": "grm", "prompt": QUESTION, "response": GOOD, "group": "g", "id": 3},
               {"kind": "grm", "prompt": QUESTION, "response": BAD, "group": "g", "id": 4}]
    rows = _score_subprocess(tmp_path, samples, judge_yaml(model, "{math: 1.0, genrm: 0.5}"))
    assert [r["id"] for r in rows] == [0, 1, 2, 3, 4]
    assert not any("no judge engines" in str(r["details"].get("error")) for r in rows)
    tok = load_judge_tokenizer(model)
    hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()  # as the engine runs it
    good, bad = verify_p_yes(hf, tok, [{"question": QUESTION, "response": x} for x in (GOOD, BAD)])
    assert rows[0]["reward"] == pytest.approx(0.5 * good, abs=1e-3)  # its own kind, weighted 0.5
    assert rows[0]["details"]["terms"]["genrm"] == pytest.approx(good, abs=1e-3)
    assert rows[1]["details"]["terms"]["genrm"] == pytest.approx(bad, abs=1e-3)
    assert rows[2]["details"]["terms"] == pytest.approx({"math": 1.0, "genrm": good}, abs=1e-3)
    assert rows[2]["reward"] == pytest.approx(1.0 + 0.5 * good, abs=1e-3)
    for r, p_yes in zip(rows[3:], (good, bad)):  # one GRM set of two, and genrm (listed in terms) on each
        assert "error" not in r["details"] and "grm" in r["details"]["judge"].split("+")
        assert r["details"]["terms"]["genrm"] == pytest.approx(p_yes, abs=1e-3)
        if r["details"].get("checker_failure"):  # the judge's text unreadable twice: a verdict of 0
            assert r["reward"] == 0.0
        else:
            info = r["details"]["judge_info"]["grm"]
            assert r["details"]["terms"]["grm"] == pytest.approx(info["votes"] / (10 * info["kept"]))
            assert r["reward"] == pytest.approx(r["details"]["terms"]["grm"] + 0.5 * p_yes, abs=1e-3)


def test_reward_score_fakes_do_not_raise_the_trained_judge(tmp_path):
    """The same check as test_judge_engine's, through `asymptote reward score`:
    24 held-out wrong answers, plain and with each fake judge turn, scored by
    the rebuilt tiny judge in genrm and grm (each line its own GRM set)."""
    import pytest

    from rl.base.judge_build import judge_folder
    from tests.rewards.test_judge_engine import FAKE_TURNS, check_fakes, fake_items

    if not (judge_folder() / "config.json").is_file():
        pytest.skip(f"needs the tiny judge rebuilt with the quoted prompts, cached at {judge_folder()} "
                    "(`asymptote base judge`, about 30-40 min on 2 cores)")
    items = fake_items()
    names = ["plain", *FAKE_TURNS]
    samples = [{"kind": kind, "prompt": it["question"], "response": it["variants"][name]}
               for kind in ("genrm", "grm") for name in names for it in items]
    rows = _score_subprocess(tmp_path, samples, judge_yaml(str(judge_folder()), "{}", k=4))
    assert not any(r["details"].get("error") for r in rows)
    n, scores = len(items), {}
    for j, kind in enumerate(("genrm", "grm")):
        block = [r["details"]["terms"][kind] for r in rows[j * len(names) * n:(j + 1) * len(names) * n]]
        scores[kind] = {name: block[i * n:(i + 1) * n] for i, name in enumerate(names)}
    check_fakes(scores)

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

    from rl.errors import UserError

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("rewards:\n  replicas: 1\n  colour: blue\n")
    inp = tmp_path / "in.jsonl"
    inp.write_text("")
    with pytest.raises(UserError, match="colour"):
        _run(["reward", "score", "--input", str(inp), "--config", str(cfg)])

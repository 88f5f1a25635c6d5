"""The run's progress line in a log (not a terminal): plain lines, no bar."""
from __future__ import annotations

import io

from rl.progress import PlainTicker, ProgressLine, duration


def _metrics(step: int) -> dict:
    return {"step": step, "rollout/gen_tokens": 100, "rollout/reward_mean": 0.25,
            "eval/pass_rate": 0.5} if step % 10 == 0 else {"step": step, "rollout/gen_tokens": 100,
                                                           "rollout/reward_mean": 0.25}


def test_progress_line_in_a_log_prints_plain_lines():
    stream = io.StringIO()  # isatty() is False, as for a redirected stderr
    line = ProgressLine(total=40, start=0, stream=stream)
    for step in range(1, 41):
        line.update(_metrics(step))
    line.warn("something to see")
    line.close()
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    steps = [ln for ln in lines if ln.startswith("asymptote: step ")]
    # the first step, every 40 // 20 = 2 steps, and the last
    assert steps[0].startswith("asymptote: step 1/40 ") and steps[-1].startswith("asymptote: step 40/40 ")
    assert len(steps) == 21
    assert "reward 0.250" in steps[-1] and "pass 0.500" in steps[-1] and "eta 0s" in steps[-1]
    assert lines[-1] == "asymptote: something to see"


def test_progress_line_resumed_counts_from_the_start_step():
    stream = io.StringIO()
    line = ProgressLine(total=100, start=90, stream=stream)
    for step in range(91, 101):
        line.update(_metrics(step))
    assert stream.getvalue().splitlines()[-1].startswith("asymptote: step 100/100 ")


def test_disabled_progress_line_prints_only_warnings():
    stream = io.StringIO()
    line = ProgressLine(total=5, enabled=False, stream=stream)
    for step in range(1, 6):
        line.update(_metrics(step))
    line.warn("w")
    assert stream.getvalue() == "asymptote: w\n" and line.last_pass is None and line.tokens == 500


def test_ticker_every_n_steps_or_after_a_quiet_spell(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("rl.progress.time.monotonic", lambda: now[0])
    ticker = PlainTicker(total=100, every=10, seconds=10.0)
    assert ticker.due(1) and not ticker.due(2) and ticker.due(11)
    now[0] = 10.5  # ten seconds without a line
    assert ticker.due(12) and not ticker.due(13) and ticker.due(100)
    assert duration(5) == "5s" and duration(125) == "2m05s" and duration(3720) == "1h02m"

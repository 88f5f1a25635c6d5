"""The live fitter refits in the background, writes fit.json and the plot, never raises."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rl.monitor.config import MonitorConfig
from rl.monitor.fit import sigmoid
from rl.monitor.live import LiveFitter


def _points(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = 250.0 * i
        y = 0.3 if i == 0 else float(sigmoid(x, 0.61, 1.92, 2542, 0.3) + rng.normal(0, 0.01))
        out.append({"step": 100 * i, "x": x, "y": y})
    return out


def test_refit_writes_json_plot_and_metrics(tmp_path):
    fitter = LiveFitter(tmp_path, MonitorConfig(bootstrap=40, target_budget=20000.0))
    assert fitter.latest() == {}
    fitter.submit(_points(41))
    assert fitter.wait(60)
    m = fitter.latest()
    for key in ("fit/A", "fit/A_lo", "fit/A_hi", "fit/B", "fit/C_mid", "fit/predicted", "fit/predicted_lo",
                "fit/predicted_hi", "fit/r2", "fit/warnings"):
        assert key in m
    assert m["fit/error"] == 0.0 and m["fit/step"] == 4000
    assert m["fit/A"] == pytest.approx(0.61, abs=0.02)
    assert m["fit/A_lo"] <= m["fit/A"] <= m["fit/A_hi"]
    assert m["fit/predicted"] == pytest.approx(sigmoid(20000, 0.61, 1.92, 2542, 0.3), abs=0.02)
    record = json.loads((tmp_path / "fit.json").read_text())
    assert record["step"] == 4000 and record["budget"] == 20000.0 and record["x_axis"] == "device_hours"
    assert (tmp_path / "plots" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert fitter.cpu_seconds > 0  # the fit's own CPU time, for the ledger to leave out
    fitter.close()


def test_waits_for_enough_points_and_defaults_budget(tmp_path):
    fitter = LiveFitter(tmp_path, MonitorConfig(bootstrap=0, min_points=5))
    fitter.submit(_points(4))  # step 0 + 3 evals: too early, silently nothing
    fitter.wait(30)
    assert fitter.latest() == {} and not (tmp_path / "fit.json").exists()
    fitter.submit(_points(12))
    fitter.wait(30)
    assert fitter.latest()["fit/budget"] == pytest.approx(4 * 250.0 * 11)  # None = 4x the largest seen


def test_coalesces_to_newest_request(tmp_path):
    fitter = LiveFitter(tmp_path, MonitorConfig(bootstrap=100))
    pts = _points(41)
    for n in range(10, 42):  # 32 requests while the first fit runs
        fitter.submit(pts[:n])
    fitter.wait(120)
    assert fitter.n_fits < 32
    assert fitter.latest()["fit/step"] == 4000  # the newest one was fitted


def test_failure_becomes_metric_not_exception(tmp_path, caplog):
    fitter = LiveFitter(tmp_path, MonitorConfig(bootstrap=0))
    fitter.submit(_points(20))
    fitter.wait(30)
    good_A = fitter.latest()["fit/A"]
    bad = _points(20)
    bad[5]["x"] = bad[4]["x"]  # compute stands still: the fit refuses
    fitter.submit(bad)  # must not raise
    fitter.wait(30)
    m = fitter.latest()
    assert m["fit/error"] == 1.0 and m["fit/A"] == good_A  # last good fit kept
    assert "must increase" in fitter.last_error
    assert any("scaling fit failed" in r.message for r in caplog.records)


def test_disabled_does_nothing(tmp_path):
    fitter = LiveFitter(tmp_path, MonitorConfig(enabled=False))
    fitter.submit(_points(20))
    fitter.close()
    assert fitter.latest() == {} and not list(tmp_path.iterdir())


def test_live_fit_reads_per_prompt_counts_from_evals_jsonl(tmp_path):
    from rl.metrics_log import MetricsLog
    from rl.monitor.fit_simulate import simulate_evals

    x = np.linspace(0.0, 8 * 2542.0, 21)
    y, counts = simulate_evals(0.61, 1.92, 2542.0, 0.3, x, spread=3.0, seed=4)
    points = []
    for i, (xv, yv, c) in enumerate(zip(x, y, counts.correct)):
        MetricsLog.append(tmp_path, "evals.jsonl", {"step": 10 * i, "k": 4, "pass_rate": float(yv),
                                                    "correct": [int(v) for v in c], "compute/device_hours": xv})
        points.append({"step": 10 * i, "x": float(xv), "y": float(yv)})
    fitter = LiveFitter(tmp_path, MonitorConfig(bootstrap=30, target_budget=8 * 2542.0))
    fitter.submit(points)
    assert fitter.wait(60)
    record = json.loads((tmp_path / "fit.json").read_text())
    assert record["noise"] == "per-prompt counts" and record["A"] == pytest.approx(0.61, abs=0.03)
    assert fitter.latest()["fit/dispersion"] > 0
    fitter.submit(points + [{"step": 999, "x": 1e5, "y": 0.6}])  # an evaluation without counts: plain points
    assert fitter.wait(60)
    assert json.loads((tmp_path / "fit.json").read_text())["noise"] == "residuals"
    fitter.close()


def test_progress_line_shows_the_forecast_with_its_interval(capsys):
    from rl.progress import ProgressLine, forecast_text

    assert forecast_text({"fit/A": 0.5}) is None  # before the first fit
    m = {"fit/predicted": 0.5123, "fit/predicted_lo": 0.4901, "fit/predicted_hi": 0.5312, "fit/budget": 0.3177}
    assert forecast_text(m) == "0.512 [0.49, 0.53] @0.318"
    line = ProgressLine(total=10, enabled=True)
    line.update({"step": 1, "rollout/reward_mean": 0.1, "fit/A": 0.52, **m})
    line.close()  # stderr is not a terminal here: a plain line, printed at the last step
    err = capsys.readouterr().err
    assert "A 0.52  fcst 0.512 [0.49, 0.53] @0.318" in err and "\r" not in err

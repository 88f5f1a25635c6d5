"""`asymptote backtest` on a real run (the `finished_run` fixture: 12 steps,
an evaluation every 2, monitor.min_points=4), and the calibration arithmetic
on a case small enough to check by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from rl.cli import main
from core.errors import UserError
from rl.metrics_log import read_rows
from rl.monitor.backtest import (Cut, RunBacktest, backtest_run, calibration, format_text, mean_abs_error,
                                 require_fitted)
from tests.rl.conftest import rows


def _axis(run_dir: Path) -> str:
    """The run's fit axis column (`compute/<monitor.x_axis>`), from its config.yaml."""
    import yaml

    return "compute/" + yaml.safe_load((run_dir / "config.yaml").read_text())["monitor"]["x_axis"]


def _evals(run_dir: Path) -> list[tuple[float, float]]:
    """(x, pass rate) of every evaluation, on the run's fit axis, read from what the controller wrote."""
    axis = _axis(run_dir)
    return [(r[axis], r["eval/pass_rate"]) for r in rows(run_dir) if "eval/pass_rate" in r]


def _sampling_se(ev: dict) -> float:
    """Standard error of one evaluation's pass rate from its per-prompt counts (evals.jsonl), by hand."""
    rates = [c / ev["k"] for c in ev["correct"]]
    return math.sqrt(sum(r * (1 - r) for r in rates) / (ev["k"] - 1)) / len(rates)


@pytest.mark.slow
def test_backtest_real_run_forecasts_its_final_evaluation(finished_run):
    evals = _evals(finished_run)
    x_final, y_final = evals[-1]
    res = backtest_run(finished_run, fractions=(0.2, 0.9), levels=(0.5, 0.8, 0.9), bootstrap=0)
    assert res.x_final == x_final and res.y_final == y_final and res.min_points == 4
    assert res.n_evals == len(evals) - 1 == 6  # 12 steps, every 2, step 0 gives R0
    short, late = res.cuts
    for cut in res.cuts:  # each cut sees exactly the evaluations up to f * x_final
        assert cut.n_evals == sum(1 for x, _ in evals if 0 < x <= cut.fraction * x_final)
    assert short.forecast is None and short.n_evals < 4
    assert "the fit needs 4 after burn-in (monitor.min_points)" in short.short
    assert late.n_evals >= 4 and late.forecast is not None
    assert late.error == pytest.approx(late.forecast - y_final)
    assert 0.0 <= late.forecast <= 1.0
    # the final evaluation's sampling error, from its per-prompt counts in evals.jsonl
    recorded = read_rows(finished_run, "evals.jsonl")
    assert res.y_final_se == pytest.approx(_sampling_se(recorded[-1]), rel=1e-6)
    # the band for one evaluation: the curve's interval widened in quadrature by the scatter of one
    # evaluation, the last fitted point's sampling sd (from evals.jsonl) times sqrt(dispersion)
    fit = late.fit
    axis = _axis(finished_run)
    last_fitted = [ev for ev in recorded if 0 < ev[axis] <= late.x_cut][-1]
    assert fit.eval_sd == pytest.approx(_sampling_se(last_fitted) * math.sqrt(max(fit.dispersion, 1.0)), rel=1e-6)
    z = stats.norm.ppf(0.95) * fit.widen
    c_lo, c_hi = late.curve_intervals[0.9]
    assert late.intervals[0.9][1] == pytest.approx(min(1.0, late.forecast + math.hypot(c_hi - late.forecast,
                                                                                       z * fit.eval_sd)))
    # wider than the curve's interval on both sides, except where that already reaches 0 or 1
    assert late.intervals[0.9][0] < c_lo or late.intervals[0.9][0] == c_lo == 0.0
    assert late.intervals[0.9][1] > c_hi or late.intervals[0.9][1] == c_hi == 1.0
    # the smoothed end: the run's own last fit (fit.json, written by the live fitter) read at x_final
    live = json.loads((finished_run / "fit.json").read_text())
    end = live["R0"] + (live["A"] - live["R0"]) / (1 + (live["C_mid"] / x_final) ** live["B"])
    assert res.fitted_end == pytest.approx(end, rel=1e-6)
    assert late.error_vs_fitted_end == pytest.approx(late.forecast - end)


@pytest.mark.slow
def test_backtest_too_short_run_is_one_line_naming_what_it_needs(finished_run, capsys):
    res = backtest_run(finished_run, fractions=(0.1, 0.2), bootstrap=0)
    with pytest.raises(UserError, match=r"too short to backtest: 6 evaluations after step 0, \d of them up to "
                                        r"20% of compute, where the fit needs 4 \(monitor.min_points\); "
                                        r"the run needs about 21 evaluations"):
        require_fitted(res)
    code = main(["backtest", str(finished_run), "--fractions", "0.1", "0.2", "--bootstrap", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("asymptote: error: ")
    code = main(["backtest", str(finished_run.parent), "--bootstrap", "0"])  # a folder without metrics
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"asymptote: error: {finished_run.parent}: not a run directory (no metrics")


@pytest.mark.slow
def test_backtest_cli_table_and_json(finished_run, capsys):
    assert main(["backtest", str(finished_run), "--fractions", "0.2", "0.9", "--bootstrap", "0", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    (run,) = d["runs"]
    assert [c["fraction"] for c in run["cuts"]] == [0.2, 0.9]
    assert run["cuts"][0]["forecast"] is None and run["cuts"][1]["forecast"] is not None
    assert set(run["cuts"][1]["intervals"]) == {"0.5", "0.8", "0.9"}
    assert [row["level"] for row in d["calibration"]] == [0.5, 0.8, 0.9]
    assert all(row["total"] == 1 for row in d["calibration"])  # one fitted cut
    assert d["mean_abs_error"]["0.9"] == pytest.approx(abs(run["cuts"][1]["error"]))
    assert main(["backtest", str(finished_run), "--fractions", "0.2", "0.9", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "too short" in out and "Calibration" in out and f"{run['y_final']:.3f}" in out


def _run(label, y_final, cuts) -> RunBacktest:
    return RunBacktest(run_dir=Path(label), label=label, x_name="compute/device_hours", x_final=1.0,
                       y_final=y_final, y_final_se=None, n_evals=10, min_points=5, cuts=cuts)


def test_calibration_and_error_arithmetic_by_hand():
    a = _run("a", 0.50, [
        Cut(0.5, 0.5, 5, 5, forecast=0.485, error=-0.015, intervals={0.5: (0.48, 0.49), 0.9: (0.45, 0.55)},
            error_vs_fitted_end=-0.005),
        Cut(0.75, 0.75, 7, 7, forecast=0.5, error=0.0, intervals={0.5: (0.495, 0.505), 0.9: (0.49, 0.51)}),
    ])
    b = _run("b", 0.40, [
        Cut(0.5, 0.5, 5, 5, forecast=0.37, error=-0.03, intervals={0.5: (0.36, 0.38), 0.9: (0.35, 0.40)},
            error_vs_fitted_end=0.015),
        Cut(0.75, 0.75, 3, short="3 evaluations ..."),  # too short: counted nowhere
    ])
    cal = {row["level"]: row for row in calibration([a, b], levels=(0.5, 0.9))}
    # 50%: a@50% misses (0.50 > 0.49), a@75% covers, b@50% misses -> 1 of 3
    assert (cal[0.5]["covered"], cal[0.5]["total"]) == (1, 3)
    assert cal[0.5]["by_fraction"] == {0.5: (0, 2), 0.75: (1, 1)}
    # 90%: a@50% covers, a@75% covers, b@50% covers at its upper edge (0.40 == hi) -> 3 of 3
    assert (cal[0.9]["covered"], cal[0.9]["total"], cal[0.9]["rate"]) == (3, 3, 1.0)
    assert mean_abs_error([a, b]) == pytest.approx({0.5: 0.0225, 0.75: 0.0})
    assert mean_abs_error([a, b], "error_vs_fitted_end") == pytest.approx({0.5: 0.01})
    text = format_text([a, b], levels=(0.5, 0.9))
    assert "1/3 (0.33)" in text and "3/3 (1.00)" in text and "b at 75%: 3 evaluations ..." in text


@pytest.mark.slow
def test_seeds_of_one_recipe_are_also_backtested_jointly(det_runs, finished_run, capsys):
    from rl.monitor.backtest import backtest
    from rl.monitor.backtest_joint import backtest_groups

    dirs = [det_runs.whole, det_runs.resumed]  # one recipe: their config.yaml differ only in run.async_checkpoint
    levels = (0.5, 0.8, 0.9)
    results = backtest(dirs, (0.3, 0.9), levels)
    (group,) = backtest_groups(results, levels)
    assert group.labels == ["whole", "resumed"]
    for single, run, d in zip(results, group.runs, dirs):
        early, late = run.cuts
        assert early.forecast is None and early.short == single.cuts[0].short  # too short alone, too short together
        assert late.n_evals == single.cuts[1].n_evals  # the same evaluations as the run's own cut
        joint, s = late.fit, group.labels.index(run.label)
        x_final, y_final = _evals(d)[-1]
        # each run's forecast is the shared A and B with its own C_mid and R0, at its own final compute
        end = joint.R0[s] + (joint.A - joint.R0[s]) / (1 + (joint.C_mid[s] / x_final) ** joint.B)
        assert late.forecast == pytest.approx(end, rel=1e-9) and late.error == pytest.approx(end - y_final)
        # its band: the run's curve interval widened by one evaluation of that run, the last fitted
        # evaluation's sampling sd (evals.jsonl) times the root of the run's dispersion
        recorded = read_rows(d, "evals.jsonl")
        last_fitted = [ev for ev in recorded if 0 < ev[_axis(d)] <= late.x_cut][-1]
        eval_sd = _sampling_se(last_fitted) * math.sqrt(joint.dispersion[s])
        assert joint.run_eval_sd[s] == pytest.approx(eval_sd, rel=1e-6)
        z = stats.norm.ppf(0.95) * joint.widen
        c_lo, c_hi = late.curve_intervals[0.9]
        assert late.intervals[0.9][1] == pytest.approx(min(1.0, end + math.hypot(c_hi - end, z * eval_sd)))
        assert late.intervals[0.5][1] <= late.intervals[0.9][1]
    # a run of another recipe is not grouped with them
    assert backtest_groups(backtest([det_runs.whole, finished_run], (0.9,), levels), levels) == []
    assert main(["backtest", *map(str, dirs), "--fractions", "0.3", "0.9", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (j,) = out["joint"]
    assert [r["run"] for r in j["runs"]] == ["whole", "resumed"] and set(j["A"]) == {"0.9"}
    assert j["mean_abs_error"]["0.9"] == pytest.approx(abs(group.runs[0].cuts[1].error) / 2
                                                       + abs(group.runs[1].cuts[1].error) / 2)
    assert main(["backtest", *map(str, dirs), "--fractions", "0.3", "0.9"]) == 0
    assert "Seeds of one recipe fitted jointly" in capsys.readouterr().out

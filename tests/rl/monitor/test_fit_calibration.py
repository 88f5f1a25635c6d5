"""The half-compute forecast on ScaleRL Table 1 shapes with our evaluation's noise: right on
average, as spread as the information allows, and with intervals that cover.

Each repetition is a run evaluated on 200 prompts x k=4 whose difficulties
differ (rl/monitor/fit_simulate.py), 41 evaluations up to 8 C_mid; the fit
sees the first half of the compute and forecasts the end. bench/bench_forecast.py
runs the same `calibrate` with many more repetitions; its numbers (docs/monitor.md)
set the tolerances below, with the repetitions a test can afford in mind.
"""
from __future__ import annotations


import pytest

from rl.monitor.fit_simulate import TABLE1, Scenario, calibrate

SCENARIO = Scenario(span=8.0, n_evals=41)


@pytest.mark.parametrize("name", list(TABLE1))
def test_forecast_at_twice_the_compute(name):
    # Bench (60 reps per shape, docs/monitor.md): bias +0.001..+0.004, median |error|
    # 0.005-0.010, 90th percentile 0.016-0.021 (code 0.029), at the Cramer-Rao limit of this
    # design (1.645 sd = 0.016-0.023). Measured at these 30 reps: bias <= 0.0041, median
    # <= 0.0102 (code). The mean's standard error is ~0.002 and the median's ~0.0015, so
    # bias <= 0.008 and median <= 0.012 fail only on a real shift.
    s = calibrate(TABLE1[name], SCENARIO, 30, bootstrap=0)
    assert s["failed"] == 0
    assert abs(s["pred_bias"]) <= 0.008
    assert s["pred_p50"] <= 0.012
    assert s["pred_p90"] <= 0.03


@pytest.mark.parametrize("name", [n for n, (_, B, _) in TABLE1.items() if B >= 1.5])
def test_asymptote_on_shapes_with_b_at_least_1_5(name):
    # Bench: A bias +0.002..+0.005, 90th percentile 0.022-0.033; measured at these 30 reps:
    # bias <= 0.0067, median |error| 0.006-0.011. Standard errors ~0.003 (mean), ~0.002 (median).
    s = calibrate(TABLE1[name], SCENARIO, 30, bootstrap=0)
    assert abs(s["A_bias"]) <= 0.012
    assert s["A_p50"] <= 0.02


def test_slow_code_curve_covers_a_and_says_it_is_wide():
    # The code curve (B = 1.09) has bent only ~80% by 4 C_mid: A is poorly pinned, so the
    # interval must be wide, say so, and still cover. "Wide" is said when the band is wider
    # than 0.1 or the fitted B is slow (< 1.35) far from A (rl/monitor/fit_diagnose.py).
    # Measured over 60 reps (docs/monitor.md): covered 0.88, wide said in 85% of fits (~70%
    # with the width rule alone), and in 2-15% on the shapes with B >= 1.65. Here, 30 reps:
    # 0.97 and 83%; baseline said wide in 7%. The binomial sd of these rates over 30 fits is
    # 0.05-0.07, hence the bars 0.8, 0.7, 0.3.
    s = calibrate(TABLE1["code"], SCENARIO, 30, bootstrap=60)
    assert s["cov_A"] >= 0.8
    assert s["width_A"] > 0.1
    assert s["wide"] >= 0.7
    assert calibrate(TABLE1["baseline"], SCENARIO, 30, bootstrap=60)["wide"] <= 0.3


def test_nominal_90_percent_intervals_cover():
    # Pooled over two shapes x 40 reps = 80 fits, bootstrap of per-prompt results (40 refits each).
    # Bench (360 fits): 0.908 forecast / 0.900 A, against 0.867 / 0.878 for the previous fit.
    # The binomial sd of a coverage of 0.90 over 80 fits is 0.034, so 0.80 is three of them
    # below (measured here: 0.99 / 0.98): a drop to the previous fit's level shows in the bench,
    # a broken interval here.
    hits_pred = hits_A = n = 0
    for name in ("baseline", "batch512"):
        s = calibrate(TABLE1[name], SCENARIO, 40, bootstrap=40, seed0=500)
        hits_pred += s["cov_pred"] * s["n"]
        hits_A += s["cov_A"] * s["n"]
        n += s["n"]
    assert n == 80
    assert hits_pred / n >= 0.80 and hits_A / n >= 0.80


def test_the_band_for_an_evaluation_covers_a_run_that_wobbles():
    # A backtest scores the forecast against the run's final *evaluation*, which carries the
    # evaluation's sampling noise and the policy's own wobble between evaluations (here a logit
    # shift of sd 0.2 per evaluation, about twice the sampling sd, as tiny-arith's dispersion of
    # ~2 shows). The curve's interval is not meant to hold that point; the band for an evaluation
    # (curve interval widened by sqrt(dispersion) x the last point's sampling sd) is.
    # Measured (2 shapes x 40 reps, bootstrap 40, seeds 500-539): the curve's interval held the
    # final evaluation 0.70 / 0.875, the band 0.975 / 0.95; without wobble 0.90 / 0.875 and
    # 0.975 / 0.95. The binomial sd of a rate of 0.95 over 80 fits is 0.024: 0.85 is four below.
    hits_eval = n = 0
    for name in ("baseline", "batch512"):
        s = calibrate(TABLE1[name], Scenario(span=8.0, n_evals=41, policy_noise=0.2), 40, bootstrap=40,
                      seed0=500)
        hits_eval += s["cov_end_eval"] * s["n"]
        n += s["n"]
    assert n == 80
    assert hits_eval / n >= 0.85

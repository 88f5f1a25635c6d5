"""Seeds of one recipe fitted together: shared A and B, per-run C_mid, R0 and noise."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from core.errors import UserError
from rl.monitor.fit_joint import RunPoints, fit_joint
from rl.monitor.fit_simulate import simulate_evals


def _seeds(A=0.61, B=1.92, c_mids=(2300.0, 2800.0, 2542.0), n=21, policy_noise=0.0):
    runs = []
    for s, c_mid in enumerate(c_mids):
        x = np.linspace(0.0, 8 * 2542.0, n)
        y, counts = simulate_evals(A, B, c_mid, 0.30, x, spread=3.0, policy_noise=policy_noise, seed=100 + s)
        runs.append(RunPoints(x, y, counts, f"s{s}"))
    return runs


def test_joint_fit_recovers_shared_a_and_per_run_c_mid():
    runs = _seeds()
    j = fit_joint(runs, bootstrap=60, budget=8 * 2542.0)
    # three runs of 20 points at sd ~0.012 pin a shared A to about +-0.01 (single runs: +-0.015)
    assert j.A == pytest.approx(0.61, abs=0.015)
    assert j.A_interval[0] <= 0.61 <= j.A_interval[1]
    assert j.B == pytest.approx(1.92, rel=0.2)
    assert j.C_mid[0] < j.C_mid[2] < j.C_mid[1]  # each run keeps its own pace
    assert all(r0 == pytest.approx(0.30, abs=0.02) for r0 in j.R0)
    assert len(j.seed_A) == 3 and j.seed_sd_A > 0
    assert all(d >= 1.0 for d in j.dispersion)
    d = j.to_dict()
    assert d["labels"] == ["s0", "s1", "s2"] and "samples" not in d


def test_a_policy_that_wobbles_between_evaluations_raises_its_run_dispersion():
    calm = fit_joint(_seeds(), bootstrap=0)
    wobbly = fit_joint(_seeds(policy_noise=0.15), bootstrap=0)
    assert max(wobbly.dispersion) > 1.5 * max(calm.dispersion)


def test_plain_points_without_counts():
    runs = [RunPoints(r.x, r.y, None, r.label) for r in _seeds()]
    j = fit_joint(runs, bootstrap=30)
    assert j.A == pytest.approx(0.61, abs=0.02)


def test_needs_two_runs():
    with pytest.raises(UserError, match="at least two runs"):
        fit_joint(_seeds()[:1])


def test_each_run_is_forecast_at_its_own_budget_with_its_own_band():
    from rl.monitor.fit_model import sigmoid

    runs = _seeds(policy_noise=0.1)
    budgets = [6 * 2542.0, 8 * 2542.0, 10 * 2542.0]
    j = fit_joint(runs, bootstrap=40, budgets=budgets)
    for s, b in enumerate(budgets):
        assert j.run_predicted[s] == pytest.approx(sigmoid(b, j.A, j.B, j.C_mid[s], j.R0[s]))
        lo, hi = j.run_interval[s]
        elo, ehi = j.run_eval_interval[s]
        # one evaluation scatters beyond the curve: its band is the curve's widened in quadrature
        pred, z = j.run_predicted[s], stats.norm.ppf(0.95) * j.widen
        assert elo == pytest.approx(max(0.0, pred - math.hypot(pred - lo, z * j.run_eval_sd[s])))
        assert ehi == pytest.approx(min(1.0, pred + math.hypot(hi - pred, z * j.run_eval_sd[s])))
    assert j.run_eval_sd[0] == pytest.approx(np.sqrt(runs[0].counts.variances()[-1] * j.dispersion[0]))
    with pytest.raises(UserError, match="2 budgets for 3 runs"):
        fit_joint(runs, bootstrap=0, budgets=budgets[:2])


def test_each_runs_band_from_half_the_compute_covers_its_final_evaluation():
    # Three seeds of the baseline shape (each its own C_mid, sd 0.1 in log), 16 evaluations of 200 x 4
    # whose policy wobbles (logit sd 0.1 per evaluation), fitted jointly on their first half and each
    # forecast at its end. bench/bench_forecast_seeds.py, 200 repetitions (seeds 5000-5199): the 90%
    # band for one evaluation covered 0.933 of the 600 final evaluations (0.86-0.98 in blocks of 40
    # repetitions, so a block of 80 like this one has an sd of ~0.03); the curve's interval alone
    # 0.785, which a band that left out the evaluation's scatter would show. Median |error| 0.015
    # (0.012-0.018 by block).
    from rl.monitor.fit_simulate import TABLE1, Scenario, calibrate_joint

    s = calibrate_joint(TABLE1["baseline"], Scenario(n_evals=16, policy_noise=0.1), 80, alone=False)
    assert s["n"] == 240
    assert s["joint_cov_eval"] >= 0.86
    assert s["joint_end_p50"] <= 0.025

"""Synthetic evaluations with the noise of a real one, for calibrating the fit.

A run is evaluated on a fixed set of n prompts with k samples each. Prompt i
has its own difficulty u_i ~ Normal(0, spread) on the logit scale; its pass
probability climbs from R0_i = expit(a0 + u_i) to A_i = expit(a1 + u_i) along
the shared ScaleRL shape s(C) = 1 / (1 + (C_mid / C)^B):

    p_i(C) = R0_i + (A_i - R0_i) s(C)

with a0, a1 chosen so that the set's mean of R0_i and A_i are exactly R0 and
A. The expected pass rate of the evaluation set is then exactly the sigmoid
with the given (A, B, C_mid, R0), the truth a forecast is scored against, and
each evaluation draws c_i ~ Binomial(k, p_i(C)). `policy_noise` adds a
per-evaluation shift of every prompt's logit (the policy wobbling between
evaluations, which no per-prompt variance can see).

`calibrate` runs many seeded repetitions of one scenario and returns error and
coverage statistics; bench/bench_forecast.py and the calibration tests both
call it, so the test measures what the bench reports. Not used by training.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize, special

from rl.monitor.fit_model import sigmoid
from rl.monitor.fit_noise import EvalCounts

# ScaleRL Table 1 (C_mid, B, A), arXiv 2510.13786; docs/monitor.md.
TABLE1 = {
    "baseline": (2542.0, 1.92, 0.610),
    "32k-gen": (11272.0, 1.89, 0.645),
    "batch2048": (10909.0, 1.70, 0.645),
    "batch512": (2818.0, 1.77, 0.605),
    "scout-moe": (4242.0, 1.65, 0.710),
    "code": (1675.0, 1.09, 0.615),
}


def _offset(u: np.ndarray, mean: float) -> float:
    """a such that mean(expit(a + u)) == mean."""
    return optimize.brentq(lambda a: float(np.mean(special.expit(a + u))) - mean, -30.0, 30.0)


def simulate_evals(A: float, B: float, C_mid: float, R0: float, x, *, n_prompts: int = 200, k: int = 4,
                   spread: float = 1.5, policy_noise: float = 0.0,
                   seed: int = 0) -> tuple[np.ndarray, EvalCounts]:
    """Pass rates and per-prompt counts of evaluations at compute values x."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=float)
    u = rng.normal(0.0, spread, n_prompts)
    r0_i = special.expit(_offset(u, R0) + u)
    a_i = special.expit(_offset(u, A) + u)
    shape = sigmoid(x, 1.0, B, C_mid, 0.0)  # s(C), 0 at C = 0
    p = r0_i[None, :] + (a_i - r0_i)[None, :] * np.atleast_1d(shape)[:, None]  # (T, n)
    if policy_noise > 0:
        wobble = rng.normal(0.0, policy_noise, (x.size, 1))
        wobble[x == 0] = 0.0
        p = special.expit(special.logit(np.clip(p, 1e-9, 1 - 1e-9)) + wobble)
    correct = rng.binomial(k, p)
    counts = EvalCounts([c for c in correct], np.full(x.size, float(k)))
    return counts.pass_rates(), counts


# ---------------------------------------------------------------- calibration


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A simulated run: evaluations evenly spread in compute up to span * C_mid; the
    fit sees the first half of the compute and forecasts the end (2x that compute)."""

    span: float = 8.0
    n_evals: int = 41  # step 0 included
    n_prompts: int = 200
    k: int = 4
    spread: float = 3.0  # logit sd of prompt difficulty; matches tiny-arith's evaluation (sd ~0.012 at p ~0.5)
    R0: float = 0.30
    policy_noise: float = 0.0


def calibrate(shape: tuple[float, float, float], scenario: Scenario, reps: int, *, use_counts: bool = True,
              seed0: int = 0, **fit_kw) -> dict[str, float]:
    """Fit `reps` simulated runs of one Table 1 shape from half their compute; error and coverage statistics.

    pred_* are forecast - truth at the end of the run, A_* are A - truth; cov_* the fraction of
    intervals that hold the truth; width_* median interval widths; wide: fraction of fits that warn
    their A interval or forecast is wide; failed: fits that raised. The run's own final evaluation
    y_end (what a backtest scores against) gives cov_end_curve and cov_end_eval, the fraction of
    curve intervals and of bands for an evaluation (FitResult.predicted_eval_interval) that hold it.
    """
    from core.errors import UserError
    from rl.monitor.fit import fit_sigmoid

    C_mid, B, A = shape
    x = np.linspace(0.0, scenario.span * C_mid, scenario.n_evals)
    half = x <= x[-1] / 2 * (1 + 1e-12)
    truth = float(sigmoid(x[-1], A, B, C_mid, scenario.R0))
    rows, failed = [], 0
    for rep in range(reps):
        y, counts = simulate_evals(A, B, C_mid, scenario.R0, x, n_prompts=scenario.n_prompts, k=scenario.k,
                                   spread=scenario.spread, policy_noise=scenario.policy_noise, seed=seed0 + rep)
        try:
            f = fit_sigmoid(x[half], y[half], counts=counts.subset(half) if use_counts else None, budget=x[-1],
                            seed=rep, **fit_kw)
        except UserError:
            failed += 1
            continue
        wide = any("wide" in w or "poorly constrained" in w for w in f.warnings)
        rows.append((f.predicted - truth, f.A - A, f.predicted_interval[0] <= truth <= f.predicted_interval[1],
                     f.A_interval[0] <= A <= f.A_interval[1], f.predicted_interval[1] - f.predicted_interval[0],
                     f.A_interval[1] - f.A_interval[0], wide,
                     f.predicted_interval[0] <= y[-1] <= f.predicted_interval[1],
                     f.predicted_eval_interval[0] <= y[-1] <= f.predicted_eval_interval[1],
                     f.predicted - y[-1]))
    a = np.array(rows, dtype=float).reshape(-1, 10)
    pe, ae = np.abs(a[:, 0]), np.abs(a[:, 1])
    return {"pred_bias": float(a[:, 0].mean()), "pred_p50": float(np.median(pe)), "pred_p90": float(np.quantile(pe, 0.9)),
            "pred_max": float(pe.max()), "A_bias": float(a[:, 1].mean()), "A_p50": float(np.median(ae)),
            "A_p90": float(np.quantile(ae, 0.9)), "cov_pred": float(a[:, 2].mean()), "cov_A": float(a[:, 3].mean()),
            "width_pred": float(np.median(a[:, 4])), "width_A": float(np.median(a[:, 5])),
            "wide": float(a[:, 6].mean()), "cov_end_curve": float(a[:, 7].mean()),
            "cov_end_eval": float(a[:, 8].mean()), "end_p50": float(np.median(np.abs(a[:, 9]))),
            "failed": failed, "n": len(rows), "truth": truth}


def calibrate_joint(shape: tuple[float, float, float], scenario: Scenario, reps: int, *, seeds: int = 3,
                    cmid_sd: float = 0.1, bootstrap: int = 100, seed0: int = 5000,
                    alone: bool = True) -> dict[str, float]:
    """Several seeds of one recipe per repetition (one A and B, each seed's C_mid drawn with a log sd
    of `cmid_sd`), fitted jointly on the first half of their compute; each seed's forecast is
    scored against its own final evaluation, as `asymptote backtest` scores it. With `alone`, each
    seed is also fitted by itself on the same points (the single backtest), for comparison.

    joint_* / alone_*: end_p50 and end_p90 of |forecast - final evaluation|, cov_eval the
    fraction of bands for an evaluation (90%) that hold it, cov_curve the curve intervals'."""
    from rl.monitor.fit import fit_sigmoid
    from rl.monitor.fit_joint import RunPoints, fit_joint

    C_mid, B, A = shape
    x = np.linspace(0.0, scenario.span * C_mid, scenario.n_evals)
    half = x <= x[-1] / 2 * (1 + 1e-12)
    rows: dict[str, list] = {"joint": [], "alone": []}
    for rep in range(reps):
        rng = np.random.default_rng(seed0 + rep)
        runs, finals = [], []
        for s in range(seeds):
            y, counts = simulate_evals(A, B, C_mid * math.exp(rng.normal(0.0, cmid_sd)), scenario.R0, x,
                                       n_prompts=scenario.n_prompts, k=scenario.k, spread=scenario.spread,
                                       policy_noise=scenario.policy_noise, seed=int(rng.integers(1 << 30)))
            runs.append(RunPoints(x[half], y[half], counts.subset(half), f"s{s}"))
            finals.append(float(y[-1]))
        j = fit_joint(runs, bootstrap=bootstrap, budgets=[x[-1]] * seeds, seed=rep)
        for s, y_end in enumerate(finals):
            rows["joint"].append((j.run_predicted[s] - y_end, _holds(j.run_eval_interval[s], y_end),
                                  _holds(j.run_interval[s], y_end)))
            if alone:
                f = fit_sigmoid(runs[s].x, runs[s].y, counts=runs[s].counts, budget=x[-1], bootstrap=bootstrap,
                                seed=rep)
                rows["alone"].append((f.predicted - y_end, _holds(f.predicted_eval_interval, y_end),
                                      _holds(f.predicted_interval, y_end)))
    out: dict[str, float] = {"n": float(len(rows["joint"]))}
    for name, r in rows.items():
        if r:
            a = np.array(r, dtype=float)
            e = np.abs(a[:, 0])
            out.update({f"{name}_end_p50": float(np.median(e)), f"{name}_end_p90": float(np.quantile(e, 0.9)),
                        f"{name}_cov_eval": float(a[:, 1].mean()), f"{name}_cov_curve": float(a[:, 2].mean())})
    return out


def _holds(interval, y: float) -> bool:
    return bool(interval[0] <= y <= interval[1])

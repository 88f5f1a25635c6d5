"""Parameter samples behind the intervals: bootstraps and the Laplace approximation.

Every method returns rows of (A, B, C_mid, R0); rl/monitor/fit.py turns them
into percentile intervals and FitResult.band into a pointwise band.

- `bootstrap_counts` (when the per-prompt results of each evaluation are
  known): synthetic data sets are the fitted curve plus the deviation of a
  resampled evaluation from the observed one (rl/monitor/fit_noise.py: the
  same prompts evaluated again, or new prompts), scaled by sqrt(dispersion)
  when the points scatter more than sampling alone explains (the policy
  itself wobbles between evaluations). The step-0 evaluation is resampled with
  the rest (one prompt draw for all), so R0 moves with it.
- `bootstrap_residuals` (plain points: a CSV, an old run): the fitted curve
  plus resampled standardised residuals, centred and inflated by
  sqrt(m / (m - p)) so their spread matches the noise. The x values are the
  evaluation schedule, so residuals rather than points are resampled: the
  design and the burn-in cut stay intact.
- `laplace`: parameters drawn from the normal with covariance
  dispersion * (J^T J)^-1 in the fitted coordinates; ~15x cheaper, less honest
  for A when the curve has not bent yet.

Each refit starts at the point estimate and runs one bounded solve, which
keeps 200 refits well under a second on one core.
"""
from __future__ import annotations

import math

import numpy as np

from rl.monitor.fit_model import Problem
from rl.monitor.fit_noise import EvalCounts


def percentile_interval(col, point: float, q: tuple[float, float], widen: float = 1.0) -> tuple[float, float]:
    """The refits' (q[0], q[1]) quantiles of `col` as an interval about `point` (never excluding
    it), each side's distance from `point` scaled by `widen`; NaNs with fewer than two refits."""
    if len(col) < 2:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(col, q)
    lo, hi = min(lo, point), max(hi, point)
    return (float(point - widen * (point - lo)), float(point + widen * (hi - point)))


def _refits(prob: Problem, t_hat, ys, y0s) -> np.ndarray:
    out = []
    for y_star, y0_star in zip(ys, y0s):
        t = prob.refit(t_hat, y_star, y0_star)
        if t is not None:
            out.append(prob.unpack(t))
    return np.array(out, dtype=float).reshape(-1, 4)


def bootstrap_counts(prob: Problem, t_hat, counts: EvalCounts, zero: np.ndarray, n_boot: int,
                     rng: np.random.Generator, how: str, dispersion: float) -> np.ndarray:
    """Refits on resampled evaluations. `counts` covers the fitted points and, where
    `zero` is True, the step-0 evaluations that measure R0 (in `counts` order)."""
    dev = counts.resample(rng, n_boot, how) * math.sqrt(max(dispersion, 1.0))
    fitted = prob.curve(t_hat)
    ys = fitted[None, :] + dev[:, ~zero]
    if zero.any() and prob.r0 is None and prob.r0_obs is not None:
        R0 = prob.unpack(t_hat)[3]
        y0s = R0 + dev[:, zero].mean(axis=1)
    else:
        y0s = [None] * n_boot
    return _refits(prob, t_hat, ys, y0s)


def bootstrap_residuals(prob: Problem, t_hat, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Refits on the fitted curve plus resampled residuals (the R0 datum keeps its own noise)."""
    fitted = prob.curve(t_hat)
    resid = (prob.y - fitted) / prob.sigma
    m, p = prob.n_data(), prob.n_params
    scaled = (resid - resid.mean()) * math.sqrt(m / max(m - p, 1))
    ys = fitted[None, :] + rng.choice(scaled, size=(n_boot, resid.size), replace=True) * prob.sigma[None, :]
    if prob.r0 is None and prob.r0_obs is not None:
        R0 = prob.unpack(t_hat)[3]
        y0s = R0 + rng.choice(scaled, size=n_boot, replace=True) * prob.r0_obs[1]
    else:
        y0s = [None] * n_boot
    return _refits(prob, t_hat, ys, y0s)


def laplace(prob: Problem, t_hat, dispersion: float, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draws from the normal approximation around the estimate."""
    J = prob.jac(t_hat)
    cov = dispersion * np.linalg.pinv(J.T @ J)
    draws = rng.multivariate_normal(t_hat, cov, size=n_draws, method="svd")
    draws = np.clip(draws, prob.lower, prob.upper)
    return prob.unpack_many(draws)

"""Two ways to find the best-fitting sigmoid, tested against each other.

- `direct` (default): one bounded least-squares fit of (A, log B, log C_mid
  [, R0]) with `scipy.optimize.least_squares` from a few starts. It reaches the
  grid's minimum without the grid's 0.005 quantisation and ~100x faster
  (bench/bench_fit.py).
- `grid`: the paper's procedure (ScaleRL, arXiv 2510.13786, App. A.5-A.7):
  grid over A (step 0.005) and C_mid (100 values), `curve_fit` of B (and R0
  when free) in every cell, keep the cell with the smallest (weighted) sum of
  squares. Departure: the paper's grid bounds (A in 0.45..0.80, C_mid in
  100..40k GPU-h) are tied to its runs; here A spans [R0, upper bound] and C_mid
  100 log-spaced values over the direct fit's C_mid range, so any compute unit
  works. The grid takes no prior on B.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import optimize

from core.errors import UserError
from rl.monitor.fit_model import B_BOUNDS, Problem

GRID_A_STEP = 0.005
GRID_N_CMID = 100


def direct(prob: Problem) -> tuple[np.ndarray, float]:
    """Best of six starts (C_mid at the median, the end and 3x the end of x; B 1 or 2)."""
    x, y = prob.x, prob.y
    r0_guess = prob.r0_obs[0] if prob.r0_obs is not None else float(y[: max(1, y.size // 10)].min())
    starts = []
    for c0 in (float(np.median(x)), float(x.max()), 3.0 * float(x.max())):
        for b0 in (1.0, 2.0):
            A0 = 0.0
            if prob.fixed_A is None:
                A0 = min(prob.upper[0] - 1e-6, max(prob.lower[0] + 1e-6, float(y.max()) + 0.02))
            starts.append(prob.pack(A0, b0, c0, prob.r0 if prob.r0 is not None else r0_guess))
    return prob.solve(starts)


def grid(prob: Problem) -> tuple[np.ndarray, float]:
    """The paper's grid: A x C_mid cells, curve_fit of B (and R0 if free) per cell."""
    if prob.prior is not None:
        raise UserError("fit: the grid method takes no prior on B; use method='direct'")
    x, y, s = prob.x, prob.y, prob.sigma
    if prob.r0 is None and prob.r0_obs is not None:  # the R0 datum as a point at C -> 0 (R(0) = R0)
        x = np.concatenate([[np.finfo(float).tiny], x])
        y = np.concatenate([[prob.r0_obs[0]], y])
        s = np.concatenate([[prob.r0_obs[1]], s])
    if prob.fixed_A is not None:
        a_values = np.array([prob.fixed_A])
    else:
        a_lo = max(float(prob.lower[0]), float(np.quantile(prob.y, 0.5)))
        a_values = np.arange(a_lo + GRID_A_STEP, float(prob.upper[0]) + 1e-12, GRID_A_STEP)
    ci = 1 if prob.fixed_A is None else 0
    c_values = np.exp(np.linspace(prob.lower[ci + 1], prob.upper[ci + 1] - math.log(10.0), GRID_N_CMID))
    r0_free = prob.r0 is None
    p0 = [1.5, float(y[0])] if r0_free else [1.5]
    lo, hi = [B_BOUNDS[0]], [B_BOUNDS[1]]
    if r0_free:
        lo.append(prob.lower[-1]), hi.append(prob.upper[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        best = _grid_cells(prob.r0, x, y, s, a_values, c_values, r0_free, p0, lo, hi)
    if best[1] is None:
        raise UserError("fit: the grid fit failed in every cell; check the data")
    t = prob.pack(*best[1])
    return t, float(np.sum(prob.residuals(t) ** 2))


def _grid_cells(r0, x, y, s, a_values, c_values, r0_free, p0, lo, hi):
    best = (np.inf, None)
    for A in a_values:
        for C_mid in c_values:
            if r0_free:
                def f(c, b, r0_, A=A, C_mid=C_mid):
                    return r0_ + (A - r0_) / (1.0 + (C_mid / c) ** b)
            else:
                def f(c, b, A=A, C_mid=C_mid):
                    return r0 + (A - r0) / (1.0 + (C_mid / c) ** b)
            try:  # unbounded Levenberg-Marquardt (fast), then clip B into range
                with np.errstate(all="ignore"):
                    p, _ = optimize.curve_fit(f, x, y, p0=p0, sigma=s, method="lm")
            except (RuntimeError, ValueError, optimize.OptimizeWarning):
                continue
            p = np.clip(p, lo, hi)
            with np.errstate(all="ignore"):
                cost = float(np.sum(((f(x, *p) - y) / s) ** 2))
            if cost < best[0]:
                best = (cost, (A, p[0], C_mid, p[1] if r0_free else r0))
    return best

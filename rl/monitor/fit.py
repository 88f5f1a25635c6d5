"""Fit the ScaleRL sigmoid to (compute, pass rate) points and say how sure we are.

    R(C) = R0 + (A - R0) / (1 + (C_mid / C) ** B)

Two ways to find the point estimate, both tested against each other:

- ``method="grid"`` is the paper's procedure (ScaleRL, arXiv 2510.13786,
  App. A.5-A.7): drop the burn-in points, grid over A (step 0.005) and C_mid
  (100 values), fit B with ``scipy.optimize.curve_fit`` at every grid cell,
  keep the cell with the smallest sum of squared residuals. Departure: the
  paper's grid bounds (A in 0.45..0.80, C_mid in 100..40k GPU-h) are tied to
  its runs; here A spans [R0, upper bound] and C_mid spans 100 log-spaced
  values from x_min/10 to 10 x_max of the fitted points, so any compute unit
  works.
- ``method="direct"`` (default) is one bounded least-squares fit of
  (A, log B, log C_mid) with ``scipy.optimize.least_squares`` from a few
  starts. It reaches the same minimum without the grid's 0.005 quantisation
  and is ~100x faster (bench/bench_fit.py).

R0 is the performance at zero RL compute: pass ``r0`` when known; otherwise a
point at x == 0 (the pre-training evaluation) supplies it; otherwise R0 is a
fourth free parameter (``r0_source == "fitted"``).

Intervals (the paper gives none for B; it quotes +-0.02 on A from three seeds):
a residual bootstrap. The fitted curve plus resampled residuals (centred and
inflated by sqrt(n / (n - p)) so their spread matches the noise) gives
``bootstrap`` synthetic data sets at the same x; each is refitted with the
direct method started at the point estimate, and the intervals are percentiles
of the refitted A, B, C_mid and of the predicted value at ``budget``. The
evaluation x values are fixed by the schedule, so resampling residuals rather
than points keeps the design (and the burn-in cut) intact. With
``bootstrap=0`` the intervals come from the Laplace approximation (parameters
drawn from the normal with covariance s^2 (J^T J)^-1 in the fitted
coordinates): much cheaper, less honest for A when the curve has not bent yet.
The predicted interval is for the curve (the expected pass rate), not for one
noisy evaluation. Percentile distances from the estimate are widened by
t_{n-p}/z (at n = 15 points, 1.06x), a small-sample correction that lifts the
measured coverage of the nominal 90% interval for A from ~0.83 to ~0.86.
Measured coverage is in docs/monitor.md and
tests/rl/monitor/test_fit.py.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
from scipy import optimize, stats

from rl.errors import UserError

MIN_POINTS = 4  # three parameters plus one degree of freedom for the noise
FEW_POINTS = 8  # below this the fit runs but warns
B_BOUNDS = (0.1, 10.0)
GRID_A_STEP = 0.005
GRID_N_CMID = 100


def sigmoid(C, A: float, B: float, C_mid: float, R0: float):
    """R(C) = R0 + (A - R0) / (1 + (C_mid / C)**B); R(0) = R0. Works on arrays."""
    C = np.asarray(C, dtype=float)
    with np.errstate(divide="ignore", over="ignore"):
        ratio = np.where(C > 0, C_mid / np.where(C > 0, C, 1.0), np.inf)
        out = R0 + (A - R0) / (1.0 + ratio ** B)
    return out if out.ndim else float(out)


@dataclasses.dataclass
class FitResult:
    """One fit: parameters, intervals, the forecast, its quality, and warnings."""

    A: float
    B: float
    C_mid: float
    R0: float
    A_interval: tuple[float, float]
    B_interval: tuple[float, float]
    C_mid_interval: tuple[float, float]
    budget: float
    predicted: float
    predicted_interval: tuple[float, float]
    r2: float
    rmse: float
    n_points: int
    n_burn_in: int
    burn_in_x: float
    warnings: list[str]
    method: str
    r0_source: str
    interval: float
    interval_method: str
    fixed_A: bool = False
    widen: float = 1.0  # t_{n-p}/z applied to percentile distances (see module docstring)
    # Parameter samples (n, 4: A, B, C_mid, R0) behind the intervals; for bands.
    samples: np.ndarray = dataclasses.field(default=None, repr=False)
    x_fit: np.ndarray = dataclasses.field(default=None, repr=False)
    y_fit: np.ndarray = dataclasses.field(default=None, repr=False)
    x_burn: np.ndarray = dataclasses.field(default=None, repr=False)
    y_burn: np.ndarray = dataclasses.field(default=None, repr=False)

    def __call__(self, C):
        return sigmoid(C, self.A, self.B, self.C_mid, self.R0)

    def band(self, C) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise interval of the fitted curve at compute values C."""
        C = np.asarray(C, dtype=float)
        if self.samples is None or len(self.samples) < 2:
            v = np.asarray(self(C), dtype=float)
            return v, v
        s = self.samples
        curves = sigmoid(C[None, :], s[:, 0:1], s[:, 1:2], s[:, 2:3], s[:, 3:4])
        q = _quantiles(self.interval)
        lo, hi = np.quantile(curves, q, axis=0)
        mid = np.asarray(self(C), dtype=float)
        lo, hi = np.minimum(lo, mid), np.maximum(hi, mid)
        return mid - self.widen * (mid - lo), mid + self.widen * (hi - mid)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain floats, lists, strings."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("samples", "x_fit", "y_fit", "x_burn", "y_burn"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = [_finite(u) for u in v]
            elif isinstance(v, float):
                v = _finite(v)
            out[f.name] = v
        return out


def _finite(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _quantiles(level: float) -> tuple[float, float]:
    return (1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0


# ---------------------------------------------------------------- validation


def _clean(x, y) -> tuple[np.ndarray, np.ndarray]:
    try:
        x = np.asarray(x, dtype=float).ravel()
        y = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError) as err:
        raise UserError(f"fit: compute and pass rate must be numbers ({err})") from None
    if x.size != y.size:
        raise UserError(f"fit: {x.size} compute values but {y.size} pass rates")
    if x.size == 0:
        raise UserError("fit: no points to fit")
    bad = np.flatnonzero(~(np.isfinite(x) & np.isfinite(y)))
    if bad.size:
        raise UserError(f"fit: NaN or infinite value at point {int(bad[0])} (x={x[bad[0]]}, y={y[bad[0]]})")
    if np.any(x < 0):
        raise UserError(f"fit: negative compute at point {int(np.flatnonzero(x < 0)[0])}")
    steps = np.diff(x)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise UserError(
            f"fit: compute must increase from point to point; point {i + 1} has x={x[i + 1]} after x={x[i]}"
        )
    return x, y


def split_burn_in(x: np.ndarray, burn_in: float | int) -> int:
    """How many leading points the burn-in drops.

    ``burn_in`` < 1 (a float) is a fraction of the compute range: points with
    x < burn_in * max(x) are dropped (the paper drops ~1.5k of 50-100k GPU-h,
    i.e. 1.5-3%). An int >= 1 drops that many leading points.
    """
    if isinstance(burn_in, (int, np.integer)) and not isinstance(burn_in, bool) and burn_in >= 1:
        return int(min(burn_in, x.size))
    frac = float(burn_in)
    if not 0.0 <= frac < 1.0:
        raise UserError(f"fit: burn_in must be a fraction in [0, 1) or a point count >= 1, got {burn_in}")
    return int(np.sum(x < frac * x.max()))


# ---------------------------------------------------------------- the model in fit coordinates


class _Problem:
    """Residuals of the sigmoid in coordinates (A, log B, log C_mid[, R0])."""

    def __init__(self, x, y, r0, fixed_A, a_bounds, cmid_bounds):
        self.x, self.y, self.logx = x, y, np.log(x)
        self.r0, self.fixed_A = r0, fixed_A
        lo, hi = [], []
        if fixed_A is None:
            lo.append(a_bounds[0]), hi.append(a_bounds[1])
        lo += [math.log(B_BOUNDS[0]), math.log(cmid_bounds[0])]
        hi += [math.log(B_BOUNDS[1]), math.log(cmid_bounds[1])]
        if r0 is None:
            lo.append(min(0.0, float(y.min()))), hi.append(float(y.max()))
        self.lower, self.upper = np.array(lo), np.array(hi)

    def unpack(self, t) -> tuple[float, float, float, float]:
        t = list(t)
        A = self.fixed_A if self.fixed_A is not None else t.pop(0)
        B, C_mid = math.exp(t[0]), math.exp(t[1])
        R0 = self.r0 if self.r0 is not None else t[2]
        return A, B, C_mid, R0

    def unpack_many(self, T: np.ndarray) -> np.ndarray:
        """Rows of fit coordinates -> rows of (A, B, C_mid, R0)."""
        cols, i = [], 0
        if self.fixed_A is None:
            cols.append(T[:, 0])
            i = 1
        else:
            cols.append(np.full(len(T), self.fixed_A))
        cols += [np.exp(T[:, i]), np.exp(T[:, i + 1])]
        cols.append(T[:, i + 2] if self.r0 is None else np.full(len(T), self.r0))
        return np.stack(cols, axis=1)

    def pack(self, A, B, C_mid, R0) -> np.ndarray:
        t = [] if self.fixed_A is not None else [A]
        t += [math.log(B), math.log(C_mid)]
        if self.r0 is None:
            t.append(R0)
        return np.clip(np.array(t, dtype=float), self.lower, self.upper)

    def curve(self, t, logx=None):
        A, B, C_mid, R0 = self.unpack(t)
        logx = self.logx if logx is None else logx
        z = np.clip(B * (math.log(C_mid) - logx), -700, 700)
        return R0 + (A - R0) / (1.0 + np.exp(z))

    def jac(self, t) -> np.ndarray:
        """d curve / d t, analytic (3x faster than finite differences)."""
        A, B, C_mid, R0 = self.unpack(t)
        z = np.clip(B * (math.log(C_mid) - self.logx), -700, 700)
        sg = 1.0 / (1.0 + np.exp(z))
        dz = -(A - R0) * sg * (1.0 - sg)
        cols = [] if self.fixed_A is not None else [sg]
        cols += [dz * z, dz * B]
        if self.r0 is None:
            cols.append(1.0 - sg)
        return np.stack(cols, axis=1)

    def solve(self, y, starts) -> tuple[np.ndarray, float]:
        best, best_sse = None, np.inf
        for t0 in starts:
            t0 = np.clip(t0, self.lower + 1e-9, self.upper - 1e-9)
            try:
                r = optimize.least_squares(lambda t: self.curve(t) - y, t0, jac=self.jac,
                                           bounds=(self.lower, self.upper), method="trf")
            except (ValueError, np.linalg.LinAlgError):
                continue
            sse = float(np.sum(r.fun ** 2))
            if sse < best_sse:
                best, best_sse = r.x, sse
        if best is None:
            raise UserError("fit: the optimiser failed on every start; check the data")
        return best, best_sse


def _bounds(x, y, r0) -> tuple[tuple[float, float], tuple[float, float]]:
    in_unit = float(y.min()) >= 0.0 and float(y.max()) <= 1.0 and (r0 is None or 0.0 <= r0 <= 1.0)
    a_hi = 1.0 if in_unit else float(y.max() + 2.0 * max(np.ptp(y), 1e-9))
    a_lo = float(r0) if r0 is not None else float(min(0.0, y.min()))
    return (a_lo, a_hi), (float(x.min()) / 10.0, float(x.max()) * 100.0)


def _direct(prob: _Problem, y) -> tuple[np.ndarray, float]:
    x = prob.x
    a_lo, a_hi = (prob.lower[0], prob.upper[0]) if prob.fixed_A is None else (None, None)
    r0_guess = float(y[: max(1, y.size // 10)].min())
    starts = []
    for c0 in (float(np.median(x)), float(x.max()), 3.0 * float(x.max())):
        for b0 in (1.0, 2.0):
            A0 = None
            if a_lo is not None:
                A0 = min(a_hi - 1e-6, max(a_lo + 1e-6, float(y.max()) + 0.02))
            starts.append(prob.pack(A0 if A0 is not None else 0.0, b0, c0,
                                    prob.r0 if prob.r0 is not None else r0_guess))
    return prob.solve(y, starts)


def _grid(prob: _Problem, y) -> tuple[np.ndarray, float]:
    """The paper's grid: A x C_mid cells, curve_fit of B (and R0 if free) per cell."""
    x = prob.x
    if prob.fixed_A is not None:
        a_values = np.array([prob.fixed_A])
    else:
        a_lo = max(float(prob.lower[0]), float(np.quantile(y, 0.5)))
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
        best = _grid_cells(prob, x, y, a_values, c_values, r0_free, p0, lo, hi)
    if best[1] is None:
        raise UserError("fit: the grid fit failed in every cell; check the data")
    return prob.pack(*best[1]), best[0]


def _grid_cells(prob, x, y, a_values, c_values, r0_free, p0, lo, hi):
    best = (np.inf, None)
    for A in a_values:
        for C_mid in c_values:
            if r0_free:
                def f(c, b, r0_, A=A, C_mid=C_mid):
                    return r0_ + (A - r0_) / (1.0 + (C_mid / c) ** b)
            else:
                def f(c, b, A=A, C_mid=C_mid):
                    return prob.r0 + (A - prob.r0) / (1.0 + (C_mid / c) ** b)
            try:  # unbounded Levenberg-Marquardt (fast), then clip B into range
                with np.errstate(all="ignore"):
                    p, _ = optimize.curve_fit(f, x, y, p0=p0, method="lm")
            except (RuntimeError, ValueError, optimize.OptimizeWarning):
                continue
            p = np.clip(p, lo, hi)
            sse = float(np.sum((f(x, *p) - y) ** 2))
            if sse < best[0]:
                best = (sse, (A, p[0], C_mid, p[1] if r0_free else prob.r0))
    return best


# ---------------------------------------------------------------- uncertainty


def _bootstrap(prob, t_hat, fitted, resid, n_boot, rng) -> np.ndarray:
    n, p = resid.size, t_hat.size
    scaled = (resid - resid.mean()) * math.sqrt(n / max(n - p, 1))
    out = []
    for _ in range(n_boot):
        y_star = fitted + rng.choice(scaled, size=n, replace=True)
        try:
            r = optimize.least_squares(lambda t: prob.curve(t) - y_star, t_hat, jac=prob.jac,
                                       bounds=(prob.lower, prob.upper), method="trf")
        except (ValueError, np.linalg.LinAlgError):
            continue
        out.append(prob.unpack(r.x))
    return np.array(out, dtype=float).reshape(-1, 4)


def _laplace(prob, t_hat, resid, n_draws, rng) -> np.ndarray:
    n, p = resid.size, t_hat.size
    J = prob.jac(t_hat)
    s2 = float(resid @ resid) / max(n - p, 1)
    cov = s2 * np.linalg.pinv(J.T @ J)
    draws = rng.multivariate_normal(t_hat, cov, size=n_draws, method="svd")
    draws = np.clip(draws, prob.lower, prob.upper)
    return prob.unpack_many(draws)


# ---------------------------------------------------------------- diagnostics


def _diagnose(x_all, y_all, x, y, fit_params, r2, prob, resid, ci_A) -> list[str]:
    A, B, C_mid, R0 = fit_params
    warns = []
    if x.size < FEW_POINTS:
        warns.append(f"only {x.size} points after burn-in: the fit is weakly constrained")
    if prob.fixed_A is None:
        lo, hi = prob.lower[0], prob.upper[0]
        if hi - A < 1e-3 * max(1.0, abs(hi)):
            warns.append(f"A={A:.3f} sits at its upper bound {hi:g}: the data do not show a ceiling")
        elif A - lo < 1e-3 * max(1.0, abs(lo)):
            warns.append(f"A={A:.3f} sits at its lower bound {lo:g}: no gain over R0")
    if B <= B_BOUNDS[0] * 1.01 or B >= B_BOUNDS[1] * 0.99:
        warns.append(f"B={B:.3g} sits at a bound {B_BOUNDS}: the curve shape is not a sigmoid")
    if C_mid > x.max():
        warns.append(
            f"C_mid={C_mid:.4g} lies beyond the largest compute {x.max():.4g}: the curve has not bent yet, "
            "so A is an extrapolation"
        )
    # Straight line: a line in x explains the points as well as the sigmoid.
    if x.size >= MIN_POINTS:
        slope, icpt = np.polyfit(x, y, 1)
        lin_sse = float(np.sum((slope * x + icpt - y) ** 2))
        sig_sse = float(resid @ resid)
        if slope > 0 and lin_sse <= 1.05 * sig_sse:
            warns.append("still rising linearly: a straight line fits as well as the sigmoid, A is not identified")
    # Collapse: the smoothed pass rate ends well below its peak.
    w = max(3, x_all.size // 8)
    if x_all.size >= 2 * w:
        smooth = np.convolve(y_all, np.ones(w) / w, mode="valid")
        peak, last = float(smooth.max()), float(smooth[-1])
        noise = float(np.std(resid)) if resid.size > 1 else 0.0
        if peak - last > max(0.02, 3.0 * noise / math.sqrt(w)) and int(np.argmax(smooth)) < smooth.size - 1:
            warns.append(
                f"collapsing: the smoothed pass rate fell from {peak:.3f} to {last:.3f}; a sigmoid assumes no decline"
            )
    if r2 < 0.5:
        warns.append(f"poor fit: R^2={r2:.2f}")
    if ci_A is not None and np.all(np.isfinite(ci_A)) and ci_A[1] - ci_A[0] > 0.2:
        warns.append(f"A is poorly constrained: interval [{ci_A[0]:.3f}, {ci_A[1]:.3f}]")
    return warns


# ---------------------------------------------------------------- entry point


def fit_sigmoid(
    x,
    y,
    *,
    r0: float | None = None,
    method: str = "direct",
    burn_in: float | int = 0.05,
    bootstrap: int = 200,
    interval: float = 0.9,
    budget: float | None = None,
    fixed_A: float | None = None,
    seed: int = 0,
) -> FitResult:
    """Fit R(C) to points (x = compute, y = pass rate) and forecast R(budget).

    x must increase strictly. A point at x == 0 gives R0 unless ``r0`` is
    passed. ``burn_in``: see ``split_burn_in``. ``bootstrap`` > 0 residual
    bootstrap draws; 0 uses the Laplace approximation. ``budget`` defaults to
    the largest x. ``fixed_A`` holds A fixed (the paper's efficiency
    comparison) and fits B, C_mid. Raises UserError on bad input.
    """
    if method not in ("direct", "grid"):
        raise UserError(f"fit: method must be 'direct' or 'grid', got {method!r}")
    if not 0.0 < interval < 1.0:
        raise UserError(f"fit: interval must be in (0, 1), got {interval}")
    x_all, y_all = _clean(x, y)
    r0_source = "given" if r0 is not None else "fitted"
    zero = x_all == 0
    if zero.any():
        if r0 is None:
            r0, r0_source = float(y_all[zero].mean()), "x=0 point"
        x_all, y_all = x_all[~zero], y_all[~zero]
    if x_all.size == 0:
        raise UserError("fit: no points with compute > 0")
    n_burn = split_burn_in(x_all, burn_in)
    x, y = x_all[n_burn:], y_all[n_burn:]
    n_params = 3 - (fixed_A is not None) + (r0 is None)
    if x.size < max(MIN_POINTS, n_params + 1):
        raise UserError(
            f"fit: too few points: {x.size} after dropping {n_burn} burn-in points "
            f"(need at least {max(MIN_POINTS, n_params + 1)})"
        )
    budget = float(x_all.max()) if budget is None else float(budget)
    if not budget > 0:
        raise UserError(f"fit: budget must be positive, got {budget}")

    a_bounds, c_bounds = _bounds(x, y, r0)
    prob = _Problem(x, y, None if r0 is None else float(r0), fixed_A, a_bounds, c_bounds)
    t_hat, sse = (_grid if method == "grid" else _direct)(prob, y)
    params = prob.unpack(t_hat)
    fitted = prob.curve(t_hat)
    resid = y - fitted
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
    rmse = math.sqrt(sse / y.size)

    rng = np.random.default_rng(seed)
    if bootstrap > 0:
        samples = _bootstrap(prob, t_hat, fitted, resid, int(bootstrap), rng)
        interval_method = f"residual bootstrap ({len(samples)} refits)"
    else:
        samples = _laplace(prob, t_hat, resid, 2000, rng)
        interval_method = "Laplace approximation (2000 draws)"
    q = _quantiles(interval)
    # Small-sample widening: percentile distances from the estimate scaled by
    # t_{n-p} / z (the bootstrap treats the noise level as known).
    widen = float(stats.t.ppf(q[1], max(y.size - t_hat.size, 1)) / stats.norm.ppf(q[1]))

    def ci(col, point):
        if len(samples) < 2:
            return (float("nan"), float("nan"))
        lo, hi = np.quantile(col, q)
        lo, hi = min(lo, point), max(hi, point)
        return (float(point - widen * (point - lo)), float(point + widen * (hi - point)))

    A, B, C_mid, R0 = params
    pred = float(sigmoid(budget, A, B, C_mid, R0))
    preds = sigmoid(budget, samples[:, 0], samples[:, 1], samples[:, 2], samples[:, 3]) if len(samples) else []
    a_lo, a_hi = a_bounds

    def clip(lo_hi):  # the widening must not leave the range A (and R) can take
        return (max(lo_hi[0], min(a_lo, R0)), min(lo_hi[1], a_hi))

    ci_A = clip(ci(samples[:, 0], A)) if fixed_A is None else (A, A)
    res = FitResult(
        A=float(A), B=float(B), C_mid=float(C_mid), R0=float(R0),
        A_interval=ci_A, B_interval=ci(samples[:, 1], B), C_mid_interval=ci(samples[:, 2], C_mid),
        budget=budget, predicted=pred, predicted_interval=clip(ci(np.asarray(preds), pred)),
        r2=float(r2), rmse=float(rmse), n_points=int(x.size), n_burn_in=int(n_burn),
        burn_in_x=float(x[0]), warnings=[], method=method, r0_source=r0_source,
        interval=float(interval), interval_method=interval_method, fixed_A=fixed_A is not None,
        widen=widen, samples=samples, x_fit=x, y_fit=y, x_burn=x_all[:n_burn], y_burn=y_all[:n_burn],
    )
    res.warnings = _diagnose(x_all, y_all, x, y, params, r2, prob, resid,
                             ci_A if fixed_A is None else None)
    return res


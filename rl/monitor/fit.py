"""Fit the ScaleRL sigmoid to (compute, pass rate) points and say how sure we are.

    R(C) = R0 + (A - R0) / (1 + (C_mid / C) ** B)

This module is the entry point (`fit_sigmoid`, `FitResult`, `split_burn_in`);
its parts live beside it, one job each:

    fit_model.py      the sigmoid, weighted residuals, the prior on B
    fit_solve.py      the direct solver (default) and the paper's grid
    fit_noise.py      each evaluation's variance from its per-prompt results
    fit_intervals.py  bootstraps and the Laplace approximation
    fit_diagnose.py   warnings
    fit_joint.py      several seeds of one recipe fitted together

Departures from the paper (App. A.5-A.7), each measured in
bench/bench_forecast.py:

- Points are weighted by their own variance when the per-prompt results are
  known (RUN_DIR/evals.jsonl): a fit knows that an evaluation on 200 prompts x
  4 samples is noisier than one on 1,000 x 16, and how much.
- The step-0 evaluation measures R0 with the same noise as any other point;
  it is a datum for a free R0, not a value R0 is pinned to (``r0_mode="pin"``
  restores pinning; ``r0=`` still fixes a known R0).
- Intervals: the paper gives none for B and quotes +-0.02 on A from three
  seeds. Here they come from refitting synthetic data sets (see
  fit_intervals.py); their meaning is in ``FitResult.interval_method``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

from core.errors import UserError
from rl.monitor.fit_diagnose import FEW_POINTS, diagnose
from rl.monitor.fit_intervals import bootstrap_counts, bootstrap_residuals, laplace, percentile_interval
from rl.monitor.fit_model import B_BOUNDS, BPrior, Problem, bounds, sigmoid
from rl.monitor.fit_noise import RESAMPLE, EvalCounts
from rl.monitor.fit_solve import GRID_A_STEP, GRID_N_CMID, direct, grid

__all__ = ["B_BOUNDS", "BPrior", "EvalCounts", "FEW_POINTS", "FitResult", "GRID_A_STEP", "GRID_N_CMID",
           "MIN_POINTS", "fit_sigmoid", "sigmoid", "split_burn_in"]

MIN_POINTS = 4  # three parameters plus one degree of freedom for the noise


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
    widen: float = 1.0  # factor applied to percentile distances from the estimate
    noise: str = "residuals"  # "per-prompt counts" when each point's variance is known
    dispersion: float = 1.0  # mean squared standardised residual (1 = scatter as sampling predicts)
    prior_B: dict | None = None  # {"median", "log_sd"} when a prior on B was used
    # Parameter samples (n, 4: A, B, C_mid, R0) behind the intervals; for bands.
    samples: np.ndarray = dataclasses.field(default=None, repr=False)
    x_fit: np.ndarray = dataclasses.field(default=None, repr=False)
    y_fit: np.ndarray = dataclasses.field(default=None, repr=False)
    x_burn: np.ndarray = dataclasses.field(default=None, repr=False)
    y_burn: np.ndarray = dataclasses.field(default=None, repr=False)
    sigma_fit: np.ndarray = dataclasses.field(default=None, repr=False)  # each fitted point's noise sd
    # One evaluation at the budget scatters around the curve by eval_sd (the last fitted point's
    # noise, scaled by the dispersion the fit measured: sampling plus the policy's own wobble);
    # predicted_eval_interval is the band for such an evaluation, the curve's interval widened by it.
    eval_sd: float = 0.0
    predicted_eval_interval: tuple[float, float] = (math.nan, math.nan)

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
        lo, hi = np.quantile(curves, _quantiles(self.interval), axis=0)
        mid = np.asarray(self(C), dtype=float)
        lo, hi = np.minimum(lo, mid), np.maximum(hi, mid)
        return mid - self.widen * (mid - lo), mid + self.widen * (hi - mid)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain floats, lists, strings."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("samples", "x_fit", "y_fit", "x_burn", "y_burn", "sigma_fit"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = [_finite(u) for u in v]
            elif isinstance(v, float):
                v = _finite(v)
            out[f.name] = v
        return out


def eval_band(pred: float, curve: tuple[float, float], sd: float, z: float) -> tuple[float, float]:
    """The band for one evaluation at the budget: each side of the curve's
    interval widened in quadrature by z evaluation standard deviations, kept
    within [0, 1] (a pass rate)."""
    if not all(math.isfinite(v) for v in curve):
        return curve
    lo = pred - math.hypot(pred - curve[0], z * sd)
    hi = pred + math.hypot(curve[1] - pred, z * sd)
    return (max(lo, 0.0), min(hi, 1.0))


def _finite(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _quantiles(level: float) -> tuple[float, float]:
    return (1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0


# ---------------------------------------------------------------- input


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


def _prior(prior_B) -> BPrior | None:
    if prior_B is None or prior_B is False:
        return None
    if prior_B is True:
        return BPrior()
    if isinstance(prior_B, BPrior):
        return prior_B
    raise UserError(f"fit: prior_B must be None, True or a BPrior, got {prior_B!r}")


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
    counts: EvalCounts | None = None,
    resample: str = "samples",
    prior_B: BPrior | bool | None = None,
    r0_mode: str = "datum",
) -> FitResult:
    """Fit R(C) to points (x = compute, y = pass rate) and forecast R(budget).

    x must increase strictly; ``budget`` defaults to the largest x. A point at
    x == 0 (the step-0 evaluation) measures R0 (``r0_mode="datum"``) or fixes
    it (``"pin"``); ``r0`` fixes a known R0. ``burn_in``: see
    ``split_burn_in``. ``counts`` (one row per point, step-0 included) are the
    per-prompt results: points are then weighted by their sampling variance
    and the bootstrap resamples evaluations (``resample``: "samples" = this
    evaluation set again, "prompts" = a new draw of prompts; fit_noise.py);
    without them, residuals are resampled. ``bootstrap`` = 0 uses the Laplace
    approximation. ``fixed_A`` holds A fixed (the paper's efficiency
    comparison). ``prior_B``: True for the default weakly informative prior on
    B (fit_model.BPrior), or a BPrior. Raises UserError on bad input.
    """
    _check_options(method, interval, resample, r0_mode)
    prior = _prior(prior_B)
    pts = _prepare(x, y, counts, r0=r0, r0_mode=r0_mode, burn_in=burn_in, fixed_A=fixed_A, budget=budget)
    prob, t_hat, a_bounds = _solve(pts, method, fixed_A, prior, noise_known=counts is not None)
    r2, rmse, dispersion = _quality(prob, t_hat, pts)
    q = _quantiles(interval)
    widen = _widening(q, counts is not None, dispersion, prob.n_data() - pts.n_params)
    # the noise scale of one point: sampling times the measured over-dispersion when the sampling
    # variance is known (never below it), the residual scale when it is not
    noise_scale = max(dispersion, 1.0) if counts is not None else dispersion
    samples, interval_method = _draw(prob, t_hat, pts, counts, int(bootstrap), np.random.default_rng(seed),
                                     resample, dispersion, noise_scale)
    params = prob.unpack(t_hat)
    iv = _intervals(prob, params, samples, pts.budget, q, widen, a_bounds, noise_scale, fixed_A is not None)
    A, B, C_mid, R0 = params
    res = FitResult(
        A=float(A), B=float(B), C_mid=float(C_mid), R0=float(R0), **iv,
        budget=pts.budget, r2=float(r2), rmse=float(rmse), n_points=int(pts.x.size), n_burn_in=int(pts.n_burn),
        burn_in_x=float(pts.x[0]), warnings=[], method=method, r0_source=pts.r0_source,
        interval=float(interval), interval_method=interval_method, fixed_A=fixed_A is not None,
        widen=widen, noise="per-prompt counts" if counts is not None else "residuals",
        dispersion=float(dispersion) if counts is not None else 1.0,
        prior_B=None if prior is None else {"median": prior.median, "log_sd": prior.log_sd},
        samples=samples, x_fit=pts.x, y_fit=pts.y, x_burn=pts.x_pos[:pts.n_burn], y_burn=pts.y_pos[:pts.n_burn],
        sigma_fit=prob.sigma,
    )
    res.warnings = diagnose(pts.x_pos, pts.y_pos, prob, params, r2, iv["A_interval"] if fixed_A is None else None,
                            pts.budget, iv["predicted_interval"], dispersion if counts is not None else None)
    return res


# ---------------------------------------------------------------- stages


def _check_options(method: str, interval: float, resample: str, r0_mode: str) -> None:
    if method not in ("direct", "grid"):
        raise UserError(f"fit: method must be 'direct' or 'grid', got {method!r}")
    if not 0.0 < interval < 1.0:
        raise UserError(f"fit: interval must be in (0, 1), got {interval}")
    if resample not in RESAMPLE:
        raise UserError(f"fit: resample must be one of {RESAMPLE}, got {resample!r}")
    if r0_mode not in ("datum", "pin"):
        raise UserError(f"fit: r0_mode must be 'datum' or 'pin', got {r0_mode!r}")


@dataclasses.dataclass
class _Points:
    """The points one fit sees: all of them, the step-0 ones set aside as R0's
    datum or pin, the burn-in dropped, and what R0 and the budget are."""

    x_all: np.ndarray
    y_all: np.ndarray
    zero: np.ndarray  # mask over all points: the step-0 evaluations
    var_all: np.ndarray | None  # each point's sampling variance, when per-prompt results are known
    r0: float | None  # a fixed R0 (given, or pinned to the step-0 mean)
    r0_obs: tuple[float, float] | None  # (mean, sd) of the step-0 evaluations when they measure a free R0
    r0_source: str
    x_pos: np.ndarray  # the points with compute > 0, burn-in included
    y_pos: np.ndarray
    n_burn: int
    fit_rows: np.ndarray  # indices into x_all of the fitted points
    n_params: int
    budget: float

    @property
    def x(self) -> np.ndarray:
        return self.x_pos[self.n_burn:]

    @property
    def y(self) -> np.ndarray:
        return self.y_pos[self.n_burn:]


def _prepare(x, y, counts: EvalCounts | None, *, r0, r0_mode: str, burn_in, fixed_A, budget) -> _Points:
    """Check the points, set the step-0 evaluation and the burn-in aside; UserError when too few remain."""
    x_all, y_all = _clean(x, y)
    if counts is not None and len(counts) != x_all.size:
        raise UserError(f"fit: {len(counts)} per-prompt result rows for {x_all.size} points")
    var_all = counts.variances() if counts is not None else None

    zero = x_all == 0
    r0_obs, r0_source = None, "given" if r0 is not None else "fitted"
    if zero.any() and r0 is None:
        y0 = float(y_all[zero].mean())
        if r0_mode == "pin":
            r0 = y0
        else:  # the mean of the step-0 evaluations, with its variance (1.0 = "as any point" until scaled)
            r0_obs = (y0, math.sqrt(float(var_all[zero].sum()) / zero.sum() ** 2) if var_all is not None else 1.0)
        r0_source = "x=0 point"
    pos = ~zero
    if not pos.any():
        raise UserError("fit: no points with compute > 0")
    x_pos, y_pos = x_all[pos], y_all[pos]
    n_burn = split_burn_in(x_pos, burn_in)
    n_fit = x_pos.size - n_burn
    n_params = 3 - (fixed_A is not None) + (r0 is None)
    need = max(MIN_POINTS, n_params + 1 - (r0_obs is not None))
    if n_fit < need:
        raise UserError(
            f"fit: too few points: {n_fit} after dropping {n_burn} burn-in points (need at least {need})"
        )
    budget = float(x_pos.max()) if budget is None else float(budget)
    if not budget > 0:
        raise UserError(f"fit: budget must be positive, got {budget}")
    return _Points(x_all=x_all, y_all=y_all, zero=zero, var_all=var_all, r0=r0, r0_obs=r0_obs,
                   r0_source=r0_source, x_pos=x_pos, y_pos=y_pos, n_burn=n_burn,
                   fit_rows=np.flatnonzero(pos)[n_burn:], n_params=n_params, budget=budget)


def _solve(pts: _Points, method: str, fixed_A, prior: BPrior | None, *, noise_known: bool):
    """The point estimate: (the Problem it solved, its parameter vector, the bounds on A)."""
    x, y = pts.x, pts.y
    sigma = np.sqrt(pts.var_all[pts.fit_rows]) if pts.var_all is not None else np.ones(x.size)
    a_bounds, c_bounds = bounds(x, y, pts.r0)
    r0_bounds = (min(0.0, float(pts.y_all.min())), float(pts.y_all.max()))

    def problem(sig, obs, pri):
        return Problem(x, y, sig, r0=pts.r0, r0_obs=obs, fixed_A=fixed_A, a_bounds=a_bounds,
                       cmid_bounds=c_bounds, r0_bounds=r0_bounds, prior=pri)

    solver = grid if method == "grid" else direct
    prob = problem(sigma, pts.r0_obs, prior)
    if not noise_known and prior is not None:
        # Unknown noise: a pilot fit without the prior sets the noise scale the prior is weighed against.
        pilot = problem(sigma, pts.r0_obs, None)
        _, cost = direct(pilot)
        s_hat = math.sqrt(max(cost, 1e-18) / max(pilot.n_data() - pts.n_params, 1))
        prob = problem(sigma * s_hat, None if pts.r0_obs is None else (pts.r0_obs[0], s_hat), prior)
    t_hat, _ = solver(prob)
    return prob, t_hat, a_bounds


def _quality(prob: Problem, t_hat, pts: _Points) -> tuple[float, float, float]:
    """R^2 and RMSE of the fitted points, and the dispersion: the mean squared
    standardised residual per degree of freedom (1 = scatter as the weights say)."""
    y = pts.y
    resid = y - prob.curve(t_hat)
    sse = float(resid @ resid)
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
    rmse = math.sqrt(sse / y.size)
    m = prob.n_data()
    data_cost = float(np.sum(prob.residuals(t_hat)[:m] ** 2))
    return r2, rmse, data_cost / max(m - pts.n_params, 1)


def _widening(q: tuple[float, float], noise_known: bool, dispersion: float, dof: int) -> float:
    """Small-sample widening of percentile distances, t_{dof}/z, wherever the noise scale is estimated
    from the residuals (plain points; counts whose points scatter more than sampling explains).
    With the sampling variance known it is not needed: measured coverage of the 90% interval on the
    Table 1 shapes is 0.91-0.94 either way (bench/bench_forecast.py); widening always gave 0.97 on
    sparse curves, intervals wider than they say."""
    if noise_known and not dispersion > 1.0:
        return 1.0
    return float(stats.t.ppf(q[1], max(dof, 1)) / stats.norm.ppf(q[1]))


def _draw(prob: Problem, t_hat, pts: _Points, counts: EvalCounts | None, bootstrap: int, rng, resample: str,
          dispersion: float, noise_scale: float) -> tuple[np.ndarray, str]:
    """Parameter samples behind the intervals (fit_intervals.py) and a line saying how they were drawn."""
    if counts is not None and bootstrap > 0:
        rows = np.concatenate([np.flatnonzero(pts.zero), pts.fit_rows])
        sub = counts.subset(np.isin(np.arange(pts.x_all.size), rows))
        samples = bootstrap_counts(prob, t_hat, sub, pts.zero[np.sort(rows)], bootstrap, rng, resample, dispersion)
        what = "this evaluation set re-evaluated" if resample == "samples" else "prompts redrawn"
        return samples, f"bootstrap of per-prompt results, {what} ({len(samples)} refits)"
    if bootstrap > 0:
        samples = bootstrap_residuals(prob, t_hat, bootstrap, rng)
        return samples, f"residual bootstrap ({len(samples)} refits)"
    return laplace(prob, t_hat, noise_scale, 2000, rng), "Laplace approximation (2000 draws)"


def _intervals(prob: Problem, params, samples: np.ndarray, budget: float, q, widen: float, a_bounds,
               noise_scale: float, a_is_fixed: bool) -> dict[str, Any]:
    """The FitResult fields that come from the samples: parameter intervals, the forecast and its bands."""
    A, B, C_mid, R0 = params
    pred = float(sigmoid(budget, A, B, C_mid, R0))
    preds = sigmoid(budget, samples[:, 0], samples[:, 1], samples[:, 2], samples[:, 3])
    a_lo, a_hi = a_bounds

    def clip(lo_hi):  # the widening must not leave the range A (and R) can take
        return (max(lo_hi[0], min(a_lo, R0)), min(lo_hi[1], a_hi))

    ci_pred = clip(percentile_interval(np.asarray(preds), pred, q, widen))
    # the noise of one evaluation, at the last fitted point's noise level
    eval_sd = float(prob.sigma[-1] * math.sqrt(noise_scale))
    return dict(
        A_interval=(A, A) if a_is_fixed else clip(percentile_interval(samples[:, 0], A, q, widen)),
        B_interval=percentile_interval(samples[:, 1], B, q, widen),
        C_mid_interval=percentile_interval(samples[:, 2], C_mid, q, widen),
        predicted=pred, predicted_interval=ci_pred, eval_sd=eval_sd,
        predicted_eval_interval=eval_band(pred, ci_pred, eval_sd, float(stats.norm.ppf(q[1])) * widen),
    )

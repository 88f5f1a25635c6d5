"""The ScaleRL sigmoid and its weighted residuals in the coordinates the optimiser sees.

    R(C) = R0 + (A - R0) / (1 + (C_mid / C) ** B)

`Problem` holds one curve's data and turns a parameter vector t = (A, log B,
log C_mid[, R0]) into standardised residuals (model - y) / sigma, one per
evaluation, so a point with a known small variance counts more. Two optional
rows join them:

- the R0 datum: when R0 is free and the data hold a step-0 evaluation, that
  evaluation is a measurement of R0 with its own noise, (R0 - y0) / sigma0,
  rather than a value R0 is pinned to (one noisy point would otherwise fix the
  whole left end of the curve);
- the prior on B: (log B - log median) / log_sd, a weakly informative
  log-normal prior (see `BPrior`); off unless asked for.

Solvers (rl/monitor/fit_solve.py) and intervals (rl/monitor/fit_intervals.py)
work on this object only.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize

from core.errors import UserError

B_BOUNDS = (0.1, 10.0)


def sigmoid(C, A: float, B: float, C_mid: float, R0: float):
    """R(C) = R0 + (A - R0) / (1 + (C_mid / C)**B); R(0) = R0. Works on arrays."""
    C = np.asarray(C, dtype=float)
    with np.errstate(divide="ignore", over="ignore"):
        ratio = np.where(C > 0, C_mid / np.where(C > 0, C, 1.0), np.inf)
        out = R0 + (A - R0) / (1.0 + ratio ** B)
    return out if out.ndim else float(out)


@dataclasses.dataclass(frozen=True)
class BPrior:
    """Weakly informative log-normal prior on the scaling exponent B.

    Default centre and width come from the published ScaleRL fits (Table 1 of
    arXiv 2510.13786: B = 1.92, 1.89, 1.70, 1.77, 1.65 and 1.09; geometric
    mean 1.64, spread of log B 0.21). The width 0.5 is more than twice that
    spread: a factor 1.65 either way is one standard deviation, so data that
    identify B overrule it, and it only steadies B where a short or sparse
    curve cannot tell B from C_mid.
    """

    median: float = 1.64
    log_sd: float = 0.5

    def __post_init__(self):
        if not (self.median > 0 and self.log_sd > 0):
            raise UserError(f"fit: the B prior needs median > 0 and log_sd > 0, got {self}")


class Problem:
    """Standardised residuals of the sigmoid in coordinates (A, log B, log C_mid[, R0])."""

    def __init__(self, x, y, sigma, *, r0=None, r0_obs=None, fixed_A=None, a_bounds, cmid_bounds,
                 r0_bounds=None, prior: BPrior | None = None):
        self.x, self.y, self.logx = x, y, np.log(x)
        self.sigma = np.broadcast_to(np.asarray(sigma, dtype=float), x.shape).copy()
        self.r0, self.fixed_A, self.prior = r0, fixed_A, prior
        self.r0_obs = r0_obs  # (y0, sigma0) when a step-0 evaluation measures a free R0
        lo, hi = [], []
        if fixed_A is None:
            lo.append(a_bounds[0]), hi.append(a_bounds[1])
        lo += [math.log(B_BOUNDS[0]), math.log(cmid_bounds[0])]
        hi += [math.log(B_BOUNDS[1]), math.log(cmid_bounds[1])]
        if r0 is None:
            rb = r0_bounds or (min(0.0, float(y.min())), float(y.max()))
            lo.append(rb[0]), hi.append(rb[1])
        self.lower, self.upper = np.array(lo), np.array(hi)
        self.n_params = self.lower.size
        self._iA = 0 if fixed_A is None else None
        self._iB = 0 if fixed_A is not None else 1

    # ------------------------------------------------------------ coordinates

    def unpack(self, t) -> tuple[float, float, float, float]:
        t = list(t)
        A = self.fixed_A if self.fixed_A is not None else t.pop(0)
        B, C_mid = math.exp(t[0]), math.exp(t[1])
        R0 = self.r0 if self.r0 is not None else t[2]
        return A, B, C_mid, R0

    def unpack_many(self, T: np.ndarray) -> np.ndarray:
        """Rows of fit coordinates -> rows of (A, B, C_mid, R0)."""
        T = np.asarray(T, dtype=float).reshape(-1, self.n_params)
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

    # ------------------------------------------------------------ model and residuals

    def curve(self, t, logx=None):
        A, B, C_mid, R0 = self.unpack(t)
        logx = self.logx if logx is None else logx
        z = np.clip(B * (math.log(C_mid) - logx), -700, 700)
        return R0 + (A - R0) / (1.0 + np.exp(z))

    def residuals(self, t, y=None, y0=None) -> np.ndarray:
        """(model - y) / sigma per point, then the R0 datum and the prior rows when present."""
        y = self.y if y is None else y
        rows = [(self.curve(t) - y) / self.sigma]
        if self.r0 is None and self.r0_obs is not None:
            obs, s0 = self.r0_obs
            rows.append(np.array([(t[-1] - (obs if y0 is None else y0)) / s0]))
        if self.prior is not None:
            rows.append(np.array([(t[self._iB] - math.log(self.prior.median)) / self.prior.log_sd]))
        return np.concatenate(rows)

    def jac(self, t, y=None, y0=None) -> np.ndarray:
        """d residuals / d t, analytic (3x faster than finite differences)."""
        A, B, C_mid, R0 = self.unpack(t)
        z = np.clip(B * (math.log(C_mid) - self.logx), -700, 700)
        sg = 1.0 / (1.0 + np.exp(z))
        dz = -(A - R0) * sg * (1.0 - sg)
        cols = [] if self.fixed_A is not None else [sg]
        cols += [dz * z, dz * B]
        if self.r0 is None:
            cols.append(1.0 - sg)
        J = [np.stack(cols, axis=1) / self.sigma[:, None]]
        if self.r0 is None and self.r0_obs is not None:
            row = np.zeros((1, self.n_params))
            row[0, -1] = 1.0 / self.r0_obs[1]
            J.append(row)
        if self.prior is not None:
            row = np.zeros((1, self.n_params))
            row[0, self._iB] = 1.0 / self.prior.log_sd
            J.append(row)
        return np.concatenate(J, axis=0)

    def n_data(self) -> int:
        """Rows that are measurements (the points and the R0 datum, not the prior)."""
        return self.x.size + int(self.r0 is None and self.r0_obs is not None)

    # ------------------------------------------------------------ solving

    def refit(self, t0, y=None, y0=None) -> np.ndarray | None:
        """One bounded least-squares solve from t0; None when the optimiser fails."""
        return least_squares_from(t0, self.residuals, self.jac, self.lower, self.upper, (y, y0))

    def solve(self, starts, y=None, y0=None) -> tuple[np.ndarray, float]:
        """The best of several starts: (t, sum of squared standardised residuals)."""
        best, best_cost = None, np.inf
        for t0 in starts:
            t = self.refit(t0, y, y0)
            if t is None:
                continue
            cost = float(np.sum(self.residuals(t, y, y0) ** 2))
            if cost < best_cost:
                best, best_cost = t, cost
        if best is None:
            raise UserError("fit: the optimiser failed on every start; check the data")
        return best, best_cost


def least_squares_from(t0, residuals, jac, lower, upper, args) -> np.ndarray | None:
    """One bounded trust-region solve of residuals(t, *args) from t0 (moved just inside the bounds);
    None when the optimiser fails. fit_joint.py's shared-A-and-B problem solves the same way."""
    t0 = np.clip(t0, lower + 1e-9, upper - 1e-9)
    try:
        r = optimize.least_squares(residuals, t0, jac=jac, bounds=(lower, upper), method="trf", args=args)
    except (ValueError, np.linalg.LinAlgError):
        return None
    return r.x


def bounds(x, y, r0) -> tuple[tuple[float, float], tuple[float, float]]:
    """A in [R0 (or min(0, y)), 1] for pass rates (else a generous ceiling); C_mid in [x_min/10, 100 x_max]."""
    in_unit = float(y.min()) >= 0.0 and float(y.max()) <= 1.0 and (r0 is None or 0.0 <= r0 <= 1.0)
    a_hi = 1.0 if in_unit else float(y.max() + 2.0 * max(np.ptp(y), 1e-9))
    a_lo = float(r0) if r0 is not None else float(min(0.0, y.min()))
    return (a_lo, a_hi), (float(x.min()) / 10.0, float(x.max()) * 100.0)

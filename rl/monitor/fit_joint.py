"""Several seeds of one recipe fitted together: one A and B, each run its own C_mid, R0 and noise.

The paper quotes +-0.02 on A from three seeds: the spread between seeds is
the uncertainty a user comparing recipes needs, and one run's interval
cannot show it. Here the runs share the asymptote A and the exponent B (what
a recipe is), while each keeps

- its own C_mid (a seed can take off earlier; on device-hours each run's
  clock also differs) and its own R0 (seeds draw their own evaluation set),
  the step-0 evaluation of each run being a datum for its R0;
- its own noise: points are weighted by their per-prompt sampling variance
  (or a common scale for plain points) times the run's own dispersion,
  estimated from its residuals and never below 1.

The interval on A and B comes from a two-level bootstrap: runs are drawn
with replacement (the seed spread), and each drawn run's evaluations are
resampled as in a single fit (rl/monitor/fit_intervals.py). With two or three
seeds the seed level is coarse; ``seed_spread`` also reports each run's own
A fitted alone, the numbers a reader can check by eye.

Each run also gets its own forecast at its own budget (``budgets``: a
backtest forecasts each seed's final evaluation at that seed's compute) with
its curve interval and a band for one evaluation, built as a single fit's
band is (rl/monitor/fit.py): the curve's interval widened in quadrature by z
times the run's last fitted point's sampling sd times the root of its
dispersion. In a bootstrap refit a run that was not drawn keeps its own
C_mid and R0 from the point estimate and takes the refit's A and B.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

from core.errors import UserError
from rl.monitor.fit_intervals import percentile_interval
from rl.monitor.fit_model import BPrior, Problem, least_squares_from, sigmoid
from rl.monitor.fit_noise import EvalCounts


@dataclasses.dataclass
class RunPoints:
    """One run's evaluations for a joint fit (x increasing, x == 0 for step 0)."""

    x: np.ndarray
    y: np.ndarray
    counts: EvalCounts | None = None
    label: str = "run"


@dataclasses.dataclass
class JointFit:
    """A and B shared by every run; per run C_mid, R0, dispersion and forecast."""

    A: float
    B: float
    A_interval: tuple[float, float]
    B_interval: tuple[float, float]
    budget: float
    predicted: float  # mean over runs of each run's R(budget)
    predicted_interval: tuple[float, float]
    interval: float
    labels: list[str]
    C_mid: list[float]
    R0: list[float]
    dispersion: list[float]
    run_predicted: list[float]  # each run's R at its own budget
    run_budget: list[float]
    run_interval: list[tuple[float, float]]  # each run's curve interval at its budget
    run_eval_sd: list[float]  # one evaluation's scatter about the curve, per run
    run_eval_interval: list[tuple[float, float]]  # band for one evaluation of each run at its budget
    seed_A: list[float]  # each run fitted alone
    seed_sd_A: float  # standard deviation of seed_A
    n_points: list[int]
    interval_method: str
    warnings: list[str]
    samples: np.ndarray = dataclasses.field(default=None, repr=False)  # (n, 2): A, B
    run_samples: np.ndarray = dataclasses.field(default=None, repr=False)  # (n, runs): R at each budget
    widen: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("samples")
        out.pop("run_samples")
        for k in ("A_interval", "B_interval", "predicted_interval"):
            out[k] = list(out[k])
        for k in ("run_interval", "run_eval_interval"):
            out[k] = [list(v) for v in out[k]]
        return out

    def run_bands(self, level: float) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Each run's curve interval and band for one evaluation at `level`, from the same refits."""
        from rl.monitor.fit import eval_band

        q = ((1 - level) / 2, 1 - (1 - level) / 2)
        curves, bands = [], []
        for s, pred in enumerate(self.run_predicted):
            col = self.run_samples[:, s] if self.run_samples is not None else np.empty(0)
            curve = percentile_interval(col, pred, q, self.widen)
            curves.append(curve)
            bands.append(eval_band(pred, curve, self.run_eval_sd[s], float(stats.norm.ppf(q[1])) * self.widen))
        return curves, bands


class _Joint:
    """Parameters t = [A, log B, (log C_mid_s, R0_s) for each run s]."""

    def __init__(self, probs: list[Problem], prior: BPrior | None):
        self.probs, self.prior = probs, prior
        self.S = len(probs)
        lo = [max(p.lower[0] for p in probs), min(p.lower[1] for p in probs)]
        hi = [min(p.upper[0] for p in probs), max(p.upper[1] for p in probs)]
        for p in probs:
            lo += [p.lower[2], p.lower[3]]
            hi += [p.upper[2], p.upper[3]]
        self.lower, self.upper = np.array(lo), np.array(hi)
        self.scale = np.ones(self.S)  # sqrt of each run's dispersion

    def part(self, t, s) -> np.ndarray:
        return np.array([t[0], t[1], t[2 + 2 * s], t[3 + 2 * s]])

    def residuals(self, t, ys=None, y0s=None) -> np.ndarray:
        rows = []
        for s, p in enumerate(self.probs):
            r = p.residuals(self.part(t, s), None if ys is None else ys[s], None if y0s is None else y0s[s])
            rows.append(r / self.scale[s])
        if self.prior is not None:
            rows.append(np.array([(t[1] - math.log(self.prior.median)) / self.prior.log_sd]))
        return np.concatenate(rows)

    def jac(self, t, ys=None, y0s=None) -> np.ndarray:
        blocks = []
        for s, p in enumerate(self.probs):
            j = p.jac(self.part(t, s)) / self.scale[s]
            full = np.zeros((j.shape[0], self.lower.size))
            full[:, 0:2] = j[:, 0:2]
            full[:, 2 + 2 * s: 4 + 2 * s] = j[:, 2:4]
            blocks.append(full)
        if self.prior is not None:
            row = np.zeros((1, self.lower.size))
            row[0, 1] = 1.0 / self.prior.log_sd
            blocks.append(row)
        return np.concatenate(blocks, axis=0)

    def solve(self, t0, ys=None, y0s=None) -> np.ndarray | None:
        return least_squares_from(t0, self.residuals, self.jac, self.lower, self.upper, (ys, y0s))


def _problem(run: RunPoints, burn_in) -> Problem:
    from rl.monitor.fit import split_burn_in
    from rl.monitor.fit_model import bounds

    zero = run.x == 0
    pos = ~zero
    n_burn = split_burn_in(run.x[pos], burn_in)
    rows = np.flatnonzero(pos)[n_burn:]
    x, y = run.x[rows], run.y[rows]
    if x.size < 3:
        raise UserError(f"fit: {run.label}: too few points ({x.size}) after burn-in for a joint fit")
    var = run.counts.variances() if run.counts is not None else None
    sigma = np.sqrt(var[rows]) if var is not None else np.full(x.size, max(_rough_sd(y), 1e-3))
    obs = None
    if zero.any():
        s0 = math.sqrt(float(var[zero].sum())) / zero.sum() if var is not None else float(sigma[0])
        obs = (float(run.y[zero].mean()), s0)
    a_b, c_b = bounds(x, y, None)
    p = Problem(x, y, sigma, r0_obs=obs, a_bounds=a_b, cmid_bounds=c_b,
                r0_bounds=(min(0.0, float(run.y.min())), float(run.y.max())))
    p.rows, p.zero = rows, zero
    return p


def _rough_sd(y: np.ndarray) -> float:
    """Noise scale of plain points: the spread of second differences (the curve is smooth)."""
    if y.size < 4:
        return float(np.std(y)) or 1.0
    return float(np.std(np.diff(y, 2)) / math.sqrt(6.0))


def fit_joint(runs: list[RunPoints], *, burn_in: float | int = 0.05, bootstrap: int = 200, interval: float = 0.9,
              budget: float | None = None, prior_B: BPrior | bool | None = None, resample: str = "samples",
              seed: int = 0, budgets: list[float] | None = None) -> JointFit:
    """Fit runs of one recipe with shared A and B. `budgets` gives each run's own
    budget for its forecast (default: `budget` for all). Raises UserError on bad input."""
    from rl.monitor.fit import _prior, fit_sigmoid

    if len(runs) < 2:
        raise UserError("fit: a joint fit needs at least two runs")
    prior = _prior(prior_B)
    probs = [_problem(r, burn_in) for r in runs]
    singles = [fit_sigmoid(r.x, r.y, counts=r.counts, burn_in=burn_in, bootstrap=0, prior_B=prior) for r in runs]
    budget = float(max(r.x.max() for r in runs)) if budget is None else float(budget)
    budgets = [budget] * len(runs) if budgets is None else [float(b) for b in budgets]
    if len(budgets) != len(runs):
        raise UserError(f"fit: {len(budgets)} budgets for {len(runs)} runs")
    joint = _Joint(probs, prior)
    t0 = [float(np.median([f.A for f in singles])), math.log(float(np.median([f.B for f in singles])))]
    for f in singles:
        t0 += [math.log(f.C_mid), f.R0]
    t_hat = None
    for _ in range(2):  # fit, set each run's dispersion from its residuals, refit
        t_hat = joint.solve(np.array(t0) if t_hat is None else t_hat)
        if t_hat is None:
            raise UserError("fit: the joint fit failed; check the runs")
        disp = []
        for s, p in enumerate(probs):
            r = p.residuals(joint.part(t_hat, s))[: p.n_data()]
            disp.append(max(1.0, float(r @ r) / max(p.n_data() - 2 - 2.0 / joint.S, 1.0)))
        joint.scale = np.sqrt(disp)
    samples = _bootstrap(joint, runs, t_hat, bootstrap, resample, budget, budgets, np.random.default_rng(seed))
    A, B = float(t_hat[0]), math.exp(t_hat[1])
    run_pred = [float(sigmoid(b, A, B, math.exp(t_hat[2 + 2 * s]), t_hat[3 + 2 * s])) for s, b in enumerate(budgets)]
    q = ((1 - interval) / 2, 1 - (1 - interval) / 2)
    # as a single fit: t_{m-p}/z on the percentile distances when a run scatters more than sampling explains
    dof = sum(p.n_data() for p in probs) - joint.lower.size
    widen = float(stats.t.ppf(q[1], max(dof, 1)) / stats.norm.ppf(q[1])) if max(disp) > 1.0 else 1.0

    def ci(col, point):
        return percentile_interval(col, point, q)

    seed_A = [f.A for f in singles]
    warns = [f"{r.label}: {w}" for r, f in zip(runs, singles) if f.n_points < 8 for w in f.warnings[:1]]
    pred = float(np.mean(run_pred))
    eval_sd = [float(p.sigma[-1] * joint.scale[s]) for s, p in enumerate(probs)]
    out = JointFit(
        A=A, B=B, A_interval=ci(samples[:, 0], A), B_interval=ci(samples[:, 1], B), budget=budget,
        predicted=pred, predicted_interval=ci(samples[:, 2], pred), interval=interval,
        labels=[r.label for r in runs], C_mid=[math.exp(t_hat[2 + 2 * s]) for s in range(joint.S)],
        R0=[float(t_hat[3 + 2 * s]) for s in range(joint.S)], dispersion=[float(d) for d in joint.scale ** 2],
        run_predicted=run_pred, run_budget=budgets, run_interval=[], run_eval_sd=eval_sd, run_eval_interval=[],
        seed_A=seed_A, seed_sd_A=float(np.std(seed_A, ddof=1)),
        n_points=[int(p.x.size) for p in probs],
        interval_method=f"two-level bootstrap: runs redrawn, then their evaluations ({len(samples)} refits)",
        warnings=warns, samples=samples[:, :2], run_samples=samples[:, 3:], widen=widen,
    )
    out.run_interval, out.run_eval_interval = out.run_bands(interval)
    return out


def _bootstrap(joint: _Joint, runs, t_hat, n_boot: int, how: str, budget: float, budgets: list[float],
               rng) -> np.ndarray:
    """Rows (A, B, mean forecast at budget, each run's forecast at its budget): runs drawn with
    replacement, then their noise; a run not drawn keeps its fitted C_mid and R0."""
    S = joint.S
    devs = []
    for r, p in zip(runs, joint.probs):
        keep = np.zeros(r.x.size, bool)
        keep[p.rows] = True
        keep |= p.zero
        if r.counts is not None:
            d = r.counts.subset(keep).resample(rng, n_boot, how)
        else:
            d = rng.normal(0.0, 1.0, (n_boot, int(keep.sum()))) * np.concatenate(
                [np.full(int(p.zero.sum()), p.sigma[0]), p.sigma])
        devs.append((d, p.zero[keep]))
    out = []
    for b in range(max(n_boot, 0)):
        pick = rng.integers(0, S, S)
        sub = _Joint([joint.probs[i] for i in pick], joint.prior)
        sub.scale = joint.scale[pick]
        t0 = [t_hat[0], t_hat[1]]
        ys, y0s = [], []
        for i in pick:
            p, (d, z) = joint.probs[i], devs[i]
            ti = joint.part(t_hat, i)
            t0 += [ti[2], ti[3]]
            ys.append(p.curve(ti) + d[b, ~z] * sub.scale[len(ys)])
            y0s.append(ti[3] + d[b, z].mean() * sub.scale[len(y0s)] if z.any() else None)
        t = sub.solve(np.array(t0), ys, y0s)
        if t is None:
            continue
        A, B = t[0], math.exp(t[1])
        preds = [sigmoid(budget, A, B, math.exp(t[2 + 2 * s]), t[3 + 2 * s]) for s in range(S)]
        own = {}
        for pos, i in enumerate(pick):
            own.setdefault(int(i), (t[2 + 2 * pos], t[3 + 2 * pos]))
        runs_pred = []
        for i in range(S):
            log_cmid, r0 = own.get(i, joint.part(t_hat, i)[2:])
            runs_pred.append(sigmoid(budgets[i], A, B, math.exp(log_cmid), r0))
        out.append((A, B, float(np.mean(preds)), *(float(v) for v in runs_pred)))
    return np.array(out, dtype=float).reshape(-1, 3 + S)

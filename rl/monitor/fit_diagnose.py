"""Reasons not to trust a fit, as plain sentences (FitResult.warnings).

Each check is cheap and runs after every fit, the live one included; the
text is what a user reads in fit.json, the CLI and the report, so it names
the number that tripped it.
"""
from __future__ import annotations

import math

import numpy as np

from rl.monitor.fit_model import B_BOUNDS, Problem

FEW_POINTS = 8  # below this the fit runs but warns
WIDE_A = 0.1  # an interval (A or the forecast) wider than this, +-0.05 on a pass rate, is called wide
# A fitted B below this is a slow curve: it is still far from A when the data stop, so A is an
# extrapolation whose band understates the doubt in a third of runs. On the ScaleRL Table 1
# shapes fitted from half their compute (bench/bench_forecast.py), the code curve (B = 1.09)
# fits B < 1.35 in 80-90% of runs, the shapes with B >= 1.65 in 0-17% (docs/monitor.md).
SLOW_B = 1.35
SLOW_REACHED = 0.88  # ... unless the data already cover this share of the gain (then A is measured, not guessed)


def _reached(x, B: float, C_mid: float) -> float:
    """Share of the gain A - R0 that the fitted curve has covered at the largest compute."""
    return 1.0 / (1.0 + (C_mid / float(np.max(x))) ** B)


def diagnose(x_all, y_all, prob: Problem, params, r2: float, ci_A, budget: float, ci_pred,
             dispersion: float | None) -> list[str]:
    """Warnings about the fit of `prob` (post-burn-in points) given all points and the intervals."""
    x, y = prob.x, prob.y
    A, B, C_mid, R0 = params
    resid = y - prob.curve(prob.pack(A, B, C_mid, R0))
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
    if x.size >= 4:  # straight line: a line in x explains the points as well as the sigmoid
        slope, icpt = np.polyfit(x, y, 1)
        lin = float(np.sum(((slope * x + icpt - y) / prob.sigma) ** 2))
        sig = float(np.sum((resid / prob.sigma) ** 2))
        if slope > 0 and lin <= 1.05 * sig:
            warns.append("still rising linearly: a straight line fits as well as the sigmoid, A is not identified")
    warns += _collapse(y_all, resid)
    if r2 < 0.5:
        warns.append(f"poor fit: R^2={r2:.2f}")
    if dispersion is not None and dispersion > 4.0:
        warns.append(f"the points scatter {math.sqrt(dispersion):.1f}x more than evaluation sampling explains: "
                     "the policy changes between evaluations (intervals are widened to match; more frequent "
                     "evaluations narrow them, more samples per evaluation hardly do)")
    if ci_A is not None and np.all(np.isfinite(ci_A)):
        width = ci_A[1] - ci_A[0]
        if width > 0.2:
            warns.append(f"A is poorly constrained: interval [{ci_A[0]:.3f}, {ci_A[1]:.3f}]")
        elif width > WIDE_A:
            warns.append(f"A's interval [{ci_A[0]:.3f}, {ci_A[1]:.3f}] is wide: more compute will narrow it")
        elif B < SLOW_B and prob.fixed_A is None and _reached(x, B, C_mid) < SLOW_REACHED:
            reached = _reached(x, B, C_mid)
            warns.append(f"A's interval [{ci_A[0]:.3f}, {ci_A[1]:.3f}] is wide in truth: B={B:.2f} is a slow curve "
                         f"(below {SLOW_B}) that has covered {reached:.0%} of its gain, so A is an extrapolation")
    if ci_pred is not None and np.all(np.isfinite(ci_pred)) and ci_pred[1] - ci_pred[0] > WIDE_A:
        warns.append(f"the forecast at {budget:.4g} is wide: [{ci_pred[0]:.3f}, {ci_pred[1]:.3f}]")
    return warns


def _collapse(y_all, resid) -> list[str]:
    """The smoothed pass rate ends well below its peak (a sigmoid never declines)."""
    w = max(3, y_all.size // 8)
    if y_all.size < 2 * w:
        return []
    smooth = np.convolve(y_all, np.ones(w) / w, mode="valid")
    peak, last = float(smooth.max()), float(smooth[-1])
    noise = float(np.std(resid)) if resid.size > 1 else 0.0
    if peak - last > max(0.02, 3.0 * noise / math.sqrt(w)) and int(np.argmax(smooth)) < smooth.size - 1:
        return [f"collapsing: the smoothed pass rate fell from {peak:.3f} to {last:.3f}; a sigmoid assumes no decline"]
    return []


STARTUP_RATIO = 1.5  # first interval's compute per step over the median's, above which start-up work shows


def diagnose_startup(x, steps) -> str | None:
    """A warning when the first evaluation interval cost much more compute per step than later ones.

    One-time work counted as training compute (engine warm-up, compilation on a
    cold cache, the first evaluation) adds the same offset to every later x. On
    a log-compute axis that squeezes the early rise: the fit steepens B, bends
    too early and forecasts low with a confident band (reproduced on a real run
    by adding 30 device-seconds to its x: forecast 0.03 low, twice its band's
    half-width). Needs the training step of each point (run directories).
    """
    if steps is None:
        return None
    x, steps = np.asarray(x, dtype=float), np.asarray(steps, dtype=float)
    ok = np.isfinite(steps)
    x, steps = x[ok], steps[ok]
    if x.size < 4 or x[0] != 0 or np.any(np.diff(steps) <= 0):
        return None
    per_step = np.diff(x) / np.diff(steps)
    med = float(np.median(per_step[1:]))
    if not med > 0:
        return None
    ratio = float(per_step[0] / med)
    if ratio <= STARTUP_RATIO:
        return None
    excess = (per_step[0] - med) * (steps[1] - steps[0])
    return (f"the first {int(steps[1] - steps[0])} steps cost {ratio:.1f}x the compute per step of later ones "
            f"(~{excess:.3g} extra): if that is one-time start-up work counted as training compute, it shifts "
            "the curve right, steepens B and biases the forecast low; if the early steps did more work "
            "(compare compute/tokens per step), the axis is right")

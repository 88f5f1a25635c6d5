"""Pictures of the fit: one run's curve with its forecast band, and a comparison.

Matplotlib with the Agg backend (no display, safe in a background thread
because every figure is a local `Figure`, never pyplot's global state).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rl.monitor.fit import FitResult


def _xgrid(x_max: float, budget: float, x_min: float = 0.0) -> np.ndarray:
    hi = max(x_max, budget) * 1.05
    return np.linspace(max(x_min, hi * 1e-4), hi, 400)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    FigureCanvasAgg(fig)
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)  # a reader never sees a half-written file
    return path


def plot_curve(fit: FitResult, path: str | Path, *, x_label: str = "compute", y_label: str = "pass rate",
               held_out: tuple[np.ndarray, np.ndarray] | None = None, title: str | None = None) -> Path:
    """Points, fitted curve, interval band out to the budget, burn-in cut, A line."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    x_max = float(fit.x_fit.max())
    if held_out is not None and len(held_out[0]):
        x_max = max(x_max, float(np.max(held_out[0])))
    xs = _xgrid(x_max, fit.budget)
    lo, hi = fit.band(xs)
    pct = int(round(fit.interval * 100))
    ax.fill_between(xs, lo, hi, color="C0", alpha=0.2, lw=0, label=f"{pct}% band ({fit.interval_method.split(' (')[0]})")
    inside = xs <= fit.x_fit.max()
    ax.plot(xs[inside], fit(xs[inside]), color="C0", lw=2, label="fit")
    ax.plot(xs[~inside], fit(xs[~inside]), color="C0", lw=2, ls="--", label="extrapolation")
    ax.plot(fit.x_fit, fit.y_fit, "o", color="k", ms=3.5, label=f"fitted points ({fit.n_points})")
    if fit.x_burn is not None and len(fit.x_burn):
        ax.plot(fit.x_burn, fit.y_burn, "o", mfc="none", mec="gray", ms=4, label=f"burn-in ({fit.n_burn_in})")
    if held_out is not None and len(held_out[0]):
        ax.plot(held_out[0], held_out[1], "x", color="C3", ms=4, label="not fitted (after --fit-upto)")
    ax.plot([0.0], [fit.R0], "D", color="C1", ms=4, label=f"R0 = {fit.R0:.3f} ({fit.r0_source})")
    ax.axvline(fit.burn_in_x, color="gray", ls=":", lw=1, label=f"burn-in cut ({fit.burn_in_x:.4g})")
    ax.axvline(fit.budget, color="C2", ls=":", lw=1)
    ax.axhline(fit.A, color="C1", ls="--", lw=1, label=f"A = {fit.A:.3f} [{fit.A_interval[0]:.3f}, {fit.A_interval[1]:.3f}]")
    ax.errorbar([fit.budget], [fit.predicted],
                yerr=[[fit.predicted - fit.predicted_interval[0]], [fit.predicted_interval[1] - fit.predicted]],
                fmt="s", color="C2", ms=5, capsize=3, label=f"forecast {fit.predicted:.3f} at {fit.budget:.4g}")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title or f"R(C): A={fit.A:.3f}  B={fit.B:.2f}  C_mid={fit.C_mid:.4g}  R²={fit.r2:.3f}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_compare(fits: list[FitResult], labels: list[str], path: str | Path, *,
                 x_equal: float | None = None, x_label: str = "compute", y_label: str = "pass rate") -> Path:
    """All runs' points and fitted curves on one set of axes."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    x_max = max(max(float(f.x_fit.max()), f.budget) for f in fits)
    xs = _xgrid(x_max, x_max)
    for i, (f, label) in enumerate(zip(fits, labels)):
        c = f"C{i % 10}"
        lo, hi = f.band(xs)
        ax.fill_between(xs, lo, hi, color=c, alpha=0.12, lw=0)
        ax.plot(xs, f(xs), color=c, lw=2, label=f"{label}: A={f.A:.3f} B={f.B:.2f} C_mid={f.C_mid:.3g}")
        ax.plot(f.x_fit, f.y_fit, "o", color=c, ms=3)
        if f.x_burn is not None and len(f.x_burn):
            ax.plot(f.x_burn, f.y_burn, "o", mfc="none", mec=c, ms=3)
    if x_equal is not None:
        ax.axvline(x_equal, color="gray", ls=":", lw=1, label=f"equal compute {x_equal:.4g}")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)

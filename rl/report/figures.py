"""The report's fit pictures, as PNG data URIs (the page carries them inline).

Matplotlib `Figure` objects with the Agg canvas, never pyplot's global state,
so a report can be drawn from a background thread of a running controller.
The curve with its band and the comparison are the monitor's own
`plot_curve` / `plot_compare`, so the report and RUN_DIR/plots/ agree; the
backtest picture is drawn here. (The per-step panels are inline SVG:
rl/report/svg.py says why.)
"""
from __future__ import annotations

import base64
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 90


def to_uri(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def file_uri(draw: Callable[[Path], object]) -> str:
    """Run a plotting function that writes a PNG to a path; return that PNG inline."""
    with tempfile.TemporaryDirectory(prefix="asymptote-report-") as tmp:
        path = Path(tmp) / "fig.png"
        draw(path)
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def points_figure(run, x_label: str, y_label: str) -> str:
    """The evaluations alone (before the first fit is possible)."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    ax.plot(run.points.x, run.points.y, "o-", color="k", ms=4, lw=0.8)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title("evaluations so far (too few to fit)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return to_uri(fig)


def backtest_figure(result, points, x_label: str) -> str:
    """Each cut's fitted curve up to the final compute, its forecast with the
    widest interval at the final evaluation, and what was observed."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    ax.plot(points.x, points.y, "o", color="k", ms=3.5, label="evaluations", zorder=5)
    ax.plot([result.x_final], [result.y_final], "*", color="k", ms=11, label="final evaluation", zorder=6)
    xs = np.linspace(result.x_final * 1e-3, result.x_final * 1.02, 300)
    n = max(1, len(result.cuts) - 1)
    for i, cut in enumerate(result.cuts):
        c = f"C{i % 10}"
        ax.axvline(cut.x_cut, color=c, ls=":", lw=1)
        if cut.fit is None:
            continue
        level = max(cut.intervals)
        lo, hi = cut.intervals[level]
        ax.plot(xs, cut.fit(xs), color=c, lw=1.5, label=f"fit on first {cut.fraction:.0%}: {cut.forecast:.3f} "
                                                           f"[{lo:.3f}, {hi:.3f}] ({level:.0%})")
        dx = result.x_final * 0.012 * (i - n / 2)
        ax.errorbar([result.x_final + dx], [cut.forecast], yerr=[[cut.forecast - lo], [hi - cut.forecast]],
                    fmt="s", color=c, ms=4, capsize=3)
    ax.set_xlabel(x_label)
    ax.set_ylabel("pass rate")
    ax.set_title("backtest: forecasts of the final evaluation from part of the run", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return to_uri(fig)

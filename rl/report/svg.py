"""Small inline-SVG line charts for the report's per-step panels.

Why not matplotlib here: a report is rewritten after every evaluation by the
running controller, whose own CPU time counts in the compute ledger on CPU
(rl/compute_account.py). A dozen matplotlib panels cost about
two core-seconds; the same panels as SVG text cost milliseconds, scale
crisply, and keep the page small. The fit's pictures (curve with band,
backtest, comparison) stay matplotlib: they are few and already exist.

Only what the panels need: linear or log y, nice ticks, a faint raw line
under a bold one, a legend under the plot. No script, no external reference.
"""
from __future__ import annotations

import dataclasses
import html
import math

import numpy as np

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
DASHES = ("", "6,3", "2,2", "8,3,2,3")
MAX_POINTS = 800  # longer series are thinned by stride (the panels are ~400 px wide)
LEFT, RIGHT, TOP, BOTTOM, LEGEND_ROW = 58, 12, 22, 30, 14


@dataclasses.dataclass
class Line:
    label: str
    x: np.ndarray
    y: np.ndarray
    color: str
    dash: str = ""
    raw: np.ndarray | None = None  # the unsmoothed values, drawn faint underneath


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def tick_labels(ticks: list[float]) -> list[str]:
    """Labels with as many decimals as the tick spacing needs (1.000, 1.005, not 1, 1)."""
    big = max((abs(t) for t in ticks), default=0.0)
    step = min((b - a for a, b in zip(ticks, ticks[1:])), default=0.0)
    if big >= 1e5 or (0 < big < 1e-3):
        return [format(t, ".1e") if t else "0" for t in ticks]
    digits = max(0, -math.floor(math.log10(step))) if step > 0 else 3
    return [format(t, f".{digits}f") for t in ticks]


def _thin(x: np.ndarray, *ys: np.ndarray):
    if x.size <= MAX_POINTS:
        return (x, *ys)
    idx = np.unique(np.r_[np.arange(0, x.size, math.ceil(x.size / MAX_POINTS)), x.size - 1])
    return (x[idx], *(y[idx] for y in ys))


def _paths(px: np.ndarray, py: np.ndarray) -> list[str]:
    """Polyline point lists, broken where a value is missing (NaN)."""
    out, cur = [], []
    for a, b in zip(px, py):
        if math.isfinite(a) and math.isfinite(b):
            cur.append(f"{a:.1f},{b:.1f}")
        elif cur:
            out.append(" ".join(cur))
            cur = []
    if cur:
        out.append(" ".join(cur))
    return out


def chart(title: str, lines: list[Line], *, logy: bool = False, x_label: str = "step",
          width: int = 360, height: int = 230) -> str:
    """One panel as an <svg> element."""
    esc = html.escape
    tf = (lambda v: np.log10(np.where(v > 0, v, np.nan))) if logy else (lambda v: np.asarray(v, dtype=float))
    xs = np.concatenate([ln.x for ln in lines]) if lines else np.zeros(0)
    ys = np.concatenate([tf(ln.y) for ln in lines] + [tf(ln.raw) for ln in lines if ln.raw is not None]) \
        if lines else np.zeros(0)
    ys = ys[np.isfinite(ys)]
    x0, x1 = (float(xs.min()), float(xs.max())) if xs.size else (0.0, 1.0)
    y0, y1 = (float(ys.min()), float(ys.max())) if ys.size else (0.0, 1.0)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 <= y0:
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = width - LEFT - RIGHT, height - TOP - BOTTOM

    def sx(v):
        return LEFT + (np.asarray(v, dtype=float) - x0) / (x1 - x0) * pw

    def sy(v):
        return TOP + ph - (np.asarray(v, dtype=float) - y0) / (y1 - y0) * ph

    total_h = height + LEGEND_ROW * len(lines)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
           f'viewBox="0 0 {width} {total_h}" role="img" aria-label="{esc(title)}" font-family="sans-serif" '
           'font-size="10">',
           f'<text x="{width / 2:.0f}" y="14" text-anchor="middle" font-size="12">{esc(title)}</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444" stroke-width="0.8"/>']
    if logy:
        yt = [float(k) for k in range(math.ceil(y0), math.floor(y1) + 1)] or [round((y0 + y1) / 2, 1)]
        ylab = [format(10.0 ** t, ".0e") if abs(t) >= 3 else format(10.0 ** t, "g") for t in yt]
    else:
        yt = nice_ticks(y0, y1)
        ylab = tick_labels(yt)
    for t, lab in zip(yt, ylab):
        y = float(sy(t))
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd" stroke-width="0.6"/>'
                   f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{esc(lab)}</text>')
    xt = nice_ticks(x0, x1)
    for t, lab in zip(xt, tick_labels(xt)):
        x = float(sx(t))
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="#eee" stroke-width="0.6"/>'
                   f'<text x="{x:.1f}" y="{TOP + ph + 13}" text-anchor="middle">{esc(lab)}</text>')
    out.append(f'<text x="{LEFT + pw / 2:.0f}" y="{TOP + ph + 26}" text-anchor="middle">{esc(x_label)}</text>')
    for ln in lines:
        dash = f' stroke-dasharray="{ln.dash}"' if ln.dash else ""
        layers = [(ln.raw, 0.8, 0.3)] if ln.raw is not None else []
        for vals, w, alpha in [*layers, (ln.y, 1.6, 1.0)]:
            x, v = _thin(np.asarray(ln.x, dtype=float), tf(vals))
            for pts in _paths(sx(x), sy(v)):
                out.append(f'<polyline points="{pts}" fill="none" stroke="{ln.color}" stroke-width="{w}" '
                           f'stroke-opacity="{alpha}"{dash}/>')
            if x.size == 1:  # one point: a dot, a line needs two
                out.append(f'<circle cx="{float(sx(x)[0]):.1f}" cy="{float(sy(v)[0]):.1f}" r="2.5" '
                           f'fill="{ln.color}"/>')
    for i, ln in enumerate(lines):
        y = height + LEGEND_ROW * i + 4
        dash = f' stroke-dasharray="{ln.dash}"' if ln.dash else ""
        out.append(f'<line x1="{LEFT}" x2="{LEFT + 22}" y1="{y}" y2="{y}" stroke="{ln.color}" stroke-width="2"{dash}/>'
                   f'<text x="{LEFT + 28}" y="{y + 3}">{esc(ln.label)}</text>')
    out.append("</svg>")
    return "".join(out)

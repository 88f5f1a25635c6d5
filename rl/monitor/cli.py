"""`asymptote extrapolate` and `asymptote compare`: the scaling fit from the shell.

Both read a run directory (its metrics.jsonl) or any CSV/JSONL file (see
rl/monitor/sources.py for how columns are chosen). numpy, scipy and
matplotlib are imported inside the handlers.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--x", metavar="COLUMN", default=None,
                   help="compute column (default compute/device_hours, or the first of exactly two numeric columns)")
    p.add_argument("--y", metavar="COLUMN", default=None,
                   help="pass-rate column (default eval/pass_rate, or the second of exactly two numeric columns)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    p.add_argument("--method", choices=("direct", "grid"), default="direct",
                   help="direct bounded fit (default) or the paper's A x C_mid grid")
    p.add_argument("--burn-in", type=_burn_in, default=0.05, metavar="F|N",
                   help="drop points below fraction F of the largest compute (default 0.05), or the first N points")
    p.add_argument("--bootstrap", type=int, default=200, help="residual-bootstrap refits (0: Laplace approximation)")
    p.add_argument("--interval", type=float, default=0.9, help="interval level (default 0.9)")


def _burn_in(text: str) -> float | int:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return int(v) if v >= 1 and v.is_integer() else v


def register(subparsers) -> None:
    p = subparsers.add_parser("extrapolate", help="fit the ScaleRL sigmoid to one run and forecast a budget",
                              description="Fit R(C) = R0 + (A-R0)/(1+(C_mid/C)^B) and forecast R at --budget.")
    p.add_argument("source", metavar="SOURCE", help="run directory or CSV/JSONL file")
    p.add_argument("--budget", type=float, default=None, metavar="C", help="forecast at this compute (default: largest x)")
    p.add_argument("--fit-upto", type=float, default=None, metavar="C", help="fit only points with x <= C")
    p.add_argument("--plot", default=None, metavar="PATH", help="where to write the plot")
    _common(p)
    p.set_defaults(func=extrapolate)

    p = subparsers.add_parser("compare", help="compare runs' scaling curves at equal compute and with A fixed",
                              description="Fit each run, compare A, B, C_mid, the pass rate at equal compute, "
                                          "and B with A held at the runs' mean (the paper's efficiency comparison).")
    p.add_argument("sources", nargs="+", metavar="RUN_OR_FILE")
    p.add_argument("--plot", default=None, metavar="PATH", help="where to write the plot (default ./compare.png)")
    _common(p)
    p.set_defaults(func=compare)


def _default_plot(points, name: str) -> Path:
    if points.run_dir is not None:
        return points.run_dir / "plots" / f"{name}.png"
    return points.source.with_name(points.source.stem + f".{name}.png")


def _fmt(v: float | None, spec: str = ".4g") -> str:
    return "nan" if v is None or not math.isfinite(v) else format(v, spec)


def extrapolate(args) -> int:
    import numpy as np

    from rl.errors import UserError
    from rl.monitor.fit import fit_sigmoid
    from rl.monitor.plots import plot_curve
    from rl.monitor.sources import load_points

    pts = load_points(args.source, args.x, args.y)
    x, y = pts.x, pts.y
    budget = args.budget if args.budget is not None else float(x.max())
    keep = np.ones(x.size, bool) if args.fit_upto is None else x <= args.fit_upto
    if not keep.any():
        raise UserError(f"--fit-upto {args.fit_upto:g}: no points with {pts.x_name} <= it")
    fit = fit_sigmoid(x[keep], y[keep], method=args.method, burn_in=args.burn_in, bootstrap=args.bootstrap,
                      interval=args.interval, budget=budget)
    plot = _default_plot(pts, "extrapolate") if args.plot is None else Path(args.plot)
    plot_curve(fit, plot, x_label=pts.x_name, y_label=pts.y_name, held_out=(x[~keep], y[~keep]))
    out = {**fit.to_dict(), "x": pts.x_name, "y": pts.y_name, "source": str(pts.source), "plot": str(plot),
           "fit_upto": args.fit_upto}
    at = np.flatnonzero(np.isclose(x, budget, rtol=1e-9, atol=0))
    if at.size:
        out["observed"] = float(y[at[0]])
    if args.json:
        print(json.dumps(out))
        return 0
    lvl = f"{int(round(fit.interval * 100))}%"
    print(f"{pts.source}: {fit.n_points} points fitted ({fit.n_burn_in} burn-in dropped), "
          f"x={pts.x_name}, y={pts.y_name}, method={fit.method}")
    print(f"  A     = {fit.A:.4f}  {lvl} [{_fmt(fit.A_interval[0])}, {_fmt(fit.A_interval[1])}]  (asymptotic pass rate)")
    print(f"  B     = {fit.B:.3f}   {lvl} [{_fmt(fit.B_interval[0])}, {_fmt(fit.B_interval[1])}]  (scaling exponent)")
    print(f"  C_mid = {fit.C_mid:.4g}  {lvl} [{_fmt(fit.C_mid_interval[0])}, {_fmt(fit.C_mid_interval[1])}]  (half the gain)")
    print(f"  R0    = {fit.R0:.4f}  ({fit.r0_source})")
    print(f"  R({budget:.4g}) = {fit.predicted:.4f}  {lvl} [{_fmt(fit.predicted_interval[0])}, "
          f"{_fmt(fit.predicted_interval[1])}]" + (f"  observed {out['observed']:.4f}" if "observed" in out else ""))
    print(f"  R^2 = {fit.r2:.4f}  RMSE = {fit.rmse:.4f}  intervals: {fit.interval_method}")
    for w in fit.warnings:
        print(f"  warning: {w}")
    print(f"  plot: {plot}")
    return 0


def _label(points, taken: set[str]) -> str:
    base = (points.run_dir.name if points.run_dir is not None else points.source.stem) or str(points.source)
    label, i = base, 2
    while label in taken:
        label, i = f"{base}#{i}", i + 1
    taken.add(label)
    return label


def compare(args) -> int:
    import numpy as np

    from rl.monitor.fit import fit_sigmoid
    from rl.monitor.plots import plot_compare
    from rl.monitor.sources import load_points

    kw = dict(method=args.method, burn_in=args.burn_in, bootstrap=args.bootstrap, interval=args.interval)
    loaded = [load_points(s, args.x, args.y) for s in args.sources]
    axes = {p.x_name for p in loaded}
    if len(axes) > 1:
        from rl.errors import UserError

        named = ", ".join(f"{p.source}: {p.x_name}" for p in loaded)
        raise UserError(f"compare: the runs' x columns differ ({named}); pass --x to compare on one axis")
    taken: set[str] = set()
    labels = [_label(p, taken) for p in loaded]
    x_equal = min(float(p.x.max()) for p in loaded)  # the largest compute every run reached
    fits = [fit_sigmoid(p.x, p.y, budget=x_equal, **kw) for p in loaded]
    A_fixed = float(np.mean([f.A for f in fits]))
    fixed = [fit_sigmoid(p.x, p.y, budget=x_equal, fixed_A=A_fixed, **kw) for p in loaded]
    rows = []
    for label, p, f, g in zip(labels, loaded, fits, fixed):
        rows.append({
            "run": label, "source": str(p.source),
            "A": f.A, "A_interval": list(f.A_interval), "B": f.B, "B_interval": list(f.B_interval),
            "C_mid": f.C_mid, "C_mid_interval": list(f.C_mid_interval), "R0": f.R0, "r2": f.r2,
            "at_equal_compute": f.predicted, "at_equal_compute_interval": list(f.predicted_interval),
            "observed_at_equal_compute": float(np.interp(x_equal, p.x, p.y)),
            "B_fixed_A": g.B, "B_fixed_A_interval": list(g.B_interval),
            "C_mid_fixed_A": g.C_mid, "C_mid_fixed_A_interval": list(g.C_mid_interval),
            "warnings": f.warnings,
        })
    plot = Path(args.plot) if args.plot else Path("compare.png")
    plot_compare(fits, labels, plot, x_equal=x_equal, x_label=loaded[0].x_name, y_label=loaded[0].y_name)
    out = {"x": loaded[0].x_name, "y": loaded[0].y_name, "equal_compute": x_equal, "A_fixed": A_fixed,
           "interval": args.interval, "runs": rows, "plot": str(plot)}
    if args.json:
        print(json.dumps(out))
        return 0
    iv = lambda lo_hi, s=".3f": f"[{_fmt(lo_hi[0], s)}, {_fmt(lo_hi[1], s)}]"  # noqa: E731
    print(f"{'run':<18} {'A':>6} {'A interval':>16} {'B':>5} {'B interval':>14} {'C_mid':>9} "
          f"{'R@C_eq':>7} {'observed':>8} {'B|A':>5} {'C_mid|A':>9}")
    for r in rows:
        print(f"{r['run'][:18]:<18} {r['A']:6.3f} {iv(r['A_interval']):>16} {r['B']:5.2f} "
              f"{iv(r['B_interval'], '.2f'):>14} {r['C_mid']:9.4g} {r['at_equal_compute']:7.3f} "
              f"{r['observed_at_equal_compute']:8.3f} {r['B_fixed_A']:5.2f} {r['C_mid_fixed_A']:9.4g}")
    print(f"R@C_eq: fitted pass rate at equal compute {x_equal:.4g} {loaded[0].x_name} (the most every run reached).")
    print(f"B|A, C_mid|A: refitted with A fixed at the mean {A_fixed:.3f}; higher B and lower C_mid = more "
          "compute-efficient (the paper's comparison).")
    for r in rows:
        for w in r["warnings"]:
            print(f"warning: {r['run']}: {w}")
    print(f"plot: {plot}")
    return 0

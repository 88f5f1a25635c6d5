"""`asymptote extrapolate` and `asymptote compare`: the scaling fit from the shell.

Both read run directories (evals.jsonl with per-prompt results when the run
has one, else metrics.jsonl) or any CSV/JSONL file (rl/monitor/sources.py
chooses the columns). Several runs of one recipe (seeds) are fitted jointly
(rl/monitor/fit_joint.py): `extrapolate RUN RUN ...` always, `compare` for
the runs whose config.yaml differ only in their seeds. Bad input (a folder
that is no run, runs on different x axes, a plot path that cannot be
written) is one line, never a traceback. numpy, scipy and matplotlib are
imported inside the handlers.
"""
from __future__ import annotations

import argparse
import json
import math
import os
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
    p.add_argument("--bootstrap", type=int, default=200,
                   help="bootstrap refits behind the intervals (0: Laplace approximation)")
    p.add_argument("--interval", type=float, default=0.9, help="interval level (default 0.9)")
    p.add_argument("--resample", choices=("samples", "prompts"), default="samples",
                   help="with per-prompt results: intervals for this evaluation set (samples, default) "
                        "or for a new draw of prompts from the task (prompts)")
    p.add_argument("--prior-b", action="store_true",
                   help="weakly informative log-normal prior on B from the published ScaleRL fits "
                        "(median 1.64, log-sd 0.5); steadies short, sparse curves")


def _burn_in(text: str) -> float | int:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return int(v) if v >= 1 and v.is_integer() else v


def register(subparsers) -> None:
    p = subparsers.add_parser("extrapolate", help="fit the ScaleRL sigmoid to one run (or seeds of one recipe) "
                                                  "and forecast a budget",
                              description="Fit R(C) = R0 + (A-R0)/(1+(C_mid/C)^B) and forecast R at --budget. "
                                          "Several sources are seeds of one recipe: fitted jointly with shared "
                                          "A and B.")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="run directory or CSV/JSONL file (several: seeds)")
    p.add_argument("--budget", type=float, default=None, metavar="C", help="forecast at this compute (default: largest x)")
    p.add_argument("--fit-upto", type=float, default=None, metavar="C", help="fit only points with x <= C")
    p.add_argument("--plot", default=None, metavar="PATH", help="where to write the plot")
    _common(p)
    p.set_defaults(func=extrapolate)

    p = subparsers.add_parser("compare", help="compare runs' scaling curves at equal compute and with A fixed",
                              description="Fit each run, compare A, B, C_mid, the pass rate at equal compute, "
                                          "and B with A held at the runs' mean (the paper's efficiency comparison). "
                                          "Runs of one recipe that differ only in seeds are also fitted jointly.")
    p.add_argument("sources", nargs="+", metavar="RUN_OR_FILE")
    p.add_argument("--plot", default=None, metavar="PATH", help="where to write the plot (default ./compare.png)")
    _common(p)
    p.set_defaults(func=compare)


# ---------------------------------------------------------------- shared pieces


def _fit_kw(args) -> dict:
    return dict(method=args.method, burn_in=args.burn_in, bootstrap=args.bootstrap, interval=args.interval,
                resample=args.resample, prior_B=True if args.prior_b else None)


def _load_all(args):
    """Points of every source, on one x axis (or one line saying which differ)."""
    from core.errors import UserError
    from rl.monitor.sources import load_points

    if not 0.0 < args.interval < 1.0:
        raise UserError(f"--interval must be in (0, 1), got {args.interval}")
    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    loaded = [load_points(s, args.x, args.y) for s in args.sources]
    if len({p.x_name for p in loaded}) > 1:
        named = ", ".join(f"{p.run_dir or p.source}: {p.x_name}" for p in loaded)
        raise UserError(f"{args.func.__name__}: the runs' x columns differ ({named}); pass --x to use one axis")
    return loaded


def _writable(path: Path) -> Path:
    """PATH itself, once its folder exists and can be written (else one line)."""
    from core.errors import UserError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot write the plot {path}: {err.strerror or err}; pass --plot PATH") from None
    if path.is_dir() or not os.access(path.parent, os.W_OK):
        raise UserError(f"cannot write the plot {path}: {'a folder' if path.is_dir() else 'folder not writable'}; "
                        "pass --plot PATH")
    return path


def _plotting(fn, *a, **kw):
    from core.errors import UserError

    try:
        return fn(*a, **kw)
    except OSError as err:
        raise UserError(f"cannot write the plot: {err.strerror or err}; pass --plot PATH") from None


def _default_plot(points, name: str) -> Path:
    if points.run_dir is not None:
        return points.run_dir / "plots" / f"{name}.png"
    return points.source.with_name(points.source.stem + f".{name}.png")


def _fmt(v: float | None, spec: str = ".4g") -> str:
    return "nan" if v is None or not math.isfinite(v) else format(v, spec)


def _label(points, taken: set[str]) -> str:
    base = (points.run_dir.name if points.run_dir is not None else points.source.stem) or str(points.source)
    label, i = base, 2
    while label in taken:
        label, i = f"{base}#{i}", i + 1
    taken.add(label)
    return label


def _startup(points, warnings: list[str], prefix: str = "") -> None:
    """Add the start-up-cost warning (rl/monitor/fit_diagnose.py) for a run's points."""
    from rl.monitor.fit_diagnose import diagnose_startup

    w = diagnose_startup(points.x, points.steps)
    if w:
        warnings.append(prefix + w)


def _run_points(points, label: str):
    from rl.monitor.fit_joint import RunPoints

    return RunPoints(points.x, points.y, points.counts, label)


# ---------------------------------------------------------------- extrapolate


def extrapolate(args) -> int:
    import numpy as np

    from core.errors import UserError

    loaded = _load_all(args)
    if args.fit_upto is not None:
        for p in loaded:
            if not (p.x <= args.fit_upto).any():
                raise UserError(f"--fit-upto {args.fit_upto:g}: no points with {p.x_name} <= it in {p.source}")
    plot = _writable(_default_plot(loaded[0], "extrapolate") if args.plot is None else Path(args.plot))
    if len(loaded) > 1:
        return _extrapolate_joint(args, loaded, plot)
    from rl.monitor.fit import fit_sigmoid
    from rl.monitor.plots import plot_curve

    pts = loaded[0]
    x, y = pts.x, pts.y
    budget = args.budget if args.budget is not None else float(x.max())
    keep = np.ones(x.size, bool) if args.fit_upto is None else x <= args.fit_upto
    kept = pts.subset(keep)
    fit = fit_sigmoid(kept.x, kept.y, counts=kept.counts, budget=budget, **_fit_kw(args))
    _startup(kept, fit.warnings)
    _plotting(plot_curve, fit, plot, x_label=pts.x_name, y_label=pts.y_name, held_out=(x[~keep], y[~keep]))
    out = {**fit.to_dict(), "x": pts.x_name, "y": pts.y_name, "source": str(pts.source), "plot": str(plot),
           "fit_upto": args.fit_upto}
    observed = _observed_at(x, y, budget)
    if observed is not None:
        out["observed"] = observed
    if args.json:
        print(json.dumps(out))
    else:
        _print_fit(pts, fit, budget, observed, plot)
    return 0


def _extrapolate_joint(args, loaded, plot: Path) -> int:
    import numpy as np

    from rl.monitor.fit import fit_sigmoid
    from rl.monitor.fit_joint import fit_joint
    from rl.monitor.plots import plot_compare

    taken: set[str] = set()
    labels = [_label(p, taken) for p in loaded]
    kept = [p if args.fit_upto is None else p.subset(p.x <= args.fit_upto) for p in loaded]
    budget = args.budget if args.budget is not None else float(max(p.x.max() for p in loaded))
    kw = _fit_kw(args)
    joint = fit_joint([_run_points(p, lab) for p, lab in zip(kept, labels)], burn_in=args.burn_in,
                      bootstrap=args.bootstrap, interval=args.interval, budget=budget, prior_B=kw["prior_B"],
                      resample=args.resample)
    alone = [fit_sigmoid(p.x, p.y, counts=p.counts, budget=budget, **kw) for p in kept]
    for p, lab in zip(kept, labels):
        _startup(p, joint.warnings, f"{lab}: ")
    _plotting(plot_compare, alone, labels, plot, x_equal=None, x_label=loaded[0].x_name, y_label=loaded[0].y_name)
    out = {**joint.to_dict(), "x": loaded[0].x_name, "y": loaded[0].y_name,
           "sources": [str(p.source) for p in loaded], "plot": str(plot), "fit_upto": args.fit_upto}
    observed = [o for p in loaded if (o := _observed_at(p.x, p.y, budget)) is not None]
    if len(observed) == len(loaded):
        out["observed"] = float(np.mean(observed))
    if args.json:
        print(json.dumps(out))
    else:
        _print_joint(loaded, joint, budget, out.get("observed"), plot)
    return 0


def _observed_at(x, y, budget: float) -> float | None:
    """The evaluation made at the budget itself, when there is one (to set beside the forecast)."""
    import numpy as np

    at = np.flatnonzero(np.isclose(x, budget, rtol=1e-9, atol=0))
    return float(y[at[0]]) if at.size else None


def _iv(lo_hi, spec: str = ".4g") -> str:
    return f"[{_fmt(lo_hi[0], spec)}, {_fmt(lo_hi[1], spec)}]"


def _print_fit(pts, fit, budget: float, observed: float | None, plot: Path) -> None:
    lvl = f"{int(round(fit.interval * 100))}%"
    print(f"{pts.source}: {fit.n_points} points fitted ({fit.n_burn_in} burn-in dropped), "
          f"x={pts.x_name}, y={pts.y_name}, method={fit.method}, noise: {fit.noise}")
    print(f"  A     = {fit.A:.4f}  {lvl} {_iv(fit.A_interval)}  (asymptotic pass rate)")
    print(f"  B     = {fit.B:.3f}   {lvl} {_iv(fit.B_interval)}  (scaling exponent)")
    print(f"  C_mid = {fit.C_mid:.4g}  {lvl} {_iv(fit.C_mid_interval)}  (half the gain)")
    print(f"  R0    = {fit.R0:.4f}  ({fit.r0_source})")
    print(f"  R({budget:.4g}) = {fit.predicted:.4f}  {lvl} {_iv(fit.predicted_interval)}"
          + (f"  observed {observed:.4f}" if observed is not None else ""))
    print(f"          one evaluation there: {lvl} {_iv(fit.predicted_eval_interval)}  (the curve's interval and "
          f"an evaluation's scatter, sd {fit.eval_sd:.4f})")
    print(f"  R^2 = {fit.r2:.4f}  RMSE = {fit.rmse:.4f}  intervals: {fit.interval_method}")
    _print_warnings_and_plot(fit.warnings, plot)


def _print_joint(loaded, joint, budget: float, observed: float | None, plot: Path) -> None:
    lvl = f"{int(round(joint.interval * 100))}%"
    print(f"{len(loaded)} runs fitted jointly (shared A and B; each its own C_mid, R0 and noise), "
          f"x={loaded[0].x_name}, y={loaded[0].y_name}")
    seeds = ", ".join(f"{a:.3f}" for a in joint.seed_A)
    print(f"  A = {joint.A:.4f}  {lvl} {_iv(joint.A_interval)}  "
          f"(each run alone: {seeds}; seed sd {joint.seed_sd_A:.3f})")
    print(f"  B = {joint.B:.3f}   {lvl} {_iv(joint.B_interval)}")
    print(f"  {'run':<18} {'C_mid':>9} {'R0':>6} {'disp':>5} {'R(budget)':>9}  one evaluation there ({lvl})")
    for lab, c, r0, d, pr, band in zip(joint.labels, joint.C_mid, joint.R0, joint.dispersion, joint.run_predicted,
                                       joint.run_eval_interval):
        print(f"  {lab[:18]:<18} {c:9.4g} {r0:6.3f} {d:5.2f} {pr:9.4f}  {_iv(band)}")
    print(f"  R({budget:.4g}), mean over runs = {joint.predicted:.4f}  {lvl} {_iv(joint.predicted_interval)}"
          + (f"  observed {observed:.4f}" if observed is not None else ""))
    print(f"  intervals: {joint.interval_method}")
    _print_warnings_and_plot(joint.warnings, plot)


def _print_warnings_and_plot(warnings: list[str], plot: Path) -> None:
    for w in warnings:
        print(f"  warning: {w}")
    print(f"  plot: {plot}")


# ---------------------------------------------------------------- compare


def compare(args) -> int:
    import numpy as np

    from rl.monitor.fit import fit_sigmoid
    from rl.monitor.fit_joint import fit_joint
    from rl.monitor.plots import plot_compare
    from rl.monitor.recipes import seed_groups

    loaded = _load_all(args)
    plot = _writable(Path(args.plot) if args.plot else Path("compare.png"))
    kw = _fit_kw(args)
    taken: set[str] = set()
    labels = [_label(p, taken) for p in loaded]
    x_equal = min(float(p.x.max()) for p in loaded)  # the largest compute every run reached
    fits = [fit_sigmoid(p.x, p.y, counts=p.counts, budget=x_equal, **kw) for p in loaded]
    for p, f in zip(loaded, fits):
        _startup(p, f.warnings)
    A_fixed = float(np.mean([f.A for f in fits]))
    fixed = [fit_sigmoid(p.x, p.y, counts=p.counts, budget=x_equal, fixed_A=A_fixed, **kw) for p in loaded]
    rows = []
    for label, p, f, g in zip(labels, loaded, fits, fixed):
        rows.append({
            "run": label, "source": str(p.source), "noise": f.noise,
            "A": f.A, "A_interval": list(f.A_interval), "B": f.B, "B_interval": list(f.B_interval),
            "C_mid": f.C_mid, "C_mid_interval": list(f.C_mid_interval), "R0": f.R0, "r2": f.r2,
            "at_equal_compute": f.predicted, "at_equal_compute_interval": list(f.predicted_interval),
            "observed_at_equal_compute": float(np.interp(x_equal, p.x, p.y)),
            "B_fixed_A": g.B, "B_fixed_A_interval": list(g.B_interval),
            "C_mid_fixed_A": g.C_mid, "C_mid_fixed_A_interval": list(g.C_mid_interval),
            "warnings": f.warnings,
        })
    groups = []
    for idx in seed_groups([p.run_dir for p in loaded]):
        joint = fit_joint([_run_points(loaded[i], labels[i]) for i in idx], burn_in=args.burn_in,
                          bootstrap=args.bootstrap, interval=args.interval, budget=x_equal,
                          prior_B=kw["prior_B"], resample=args.resample)
        groups.append({**joint.to_dict(), "runs": [labels[i] for i in idx]})
    _plotting(plot_compare, fits, labels, plot, x_equal=x_equal, x_label=loaded[0].x_name, y_label=loaded[0].y_name)
    out = {"x": loaded[0].x_name, "y": loaded[0].y_name, "equal_compute": x_equal, "A_fixed": A_fixed,
           "interval": args.interval, "runs": rows, "groups": groups, "plot": str(plot)}
    if args.json:
        print(json.dumps(out))
        return 0
    _print_compare(rows, groups, x_equal, A_fixed, loaded[0].x_name)
    print(f"plot: {plot}")
    return 0


def _print_compare(rows, groups, x_equal, A_fixed, x_name) -> None:
    iv = lambda lo_hi, s=".3f": _iv(lo_hi, s)  # noqa: E731
    print(f"{'run':<18} {'A':>6} {'A interval':>16} {'B':>5} {'B interval':>14} {'C_mid':>9} "
          f"{'R@C_eq':>7} {'observed':>8} {'B|A':>5} {'C_mid|A':>9}")
    for r in rows:
        print(f"{r['run'][:18]:<18} {r['A']:6.3f} {iv(r['A_interval']):>16} {r['B']:5.2f} "
              f"{iv(r['B_interval'], '.2f'):>14} {r['C_mid']:9.4g} {r['at_equal_compute']:7.3f} "
              f"{r['observed_at_equal_compute']:8.3f} {r['B_fixed_A']:5.2f} {r['C_mid_fixed_A']:9.4g}")
    print(f"R@C_eq: fitted pass rate at equal compute {x_equal:.4g} {x_name} (the most every run reached).")
    print(f"B|A, C_mid|A: refitted with A fixed at the mean {A_fixed:.3f}; higher B and lower C_mid = more "
          "compute-efficient (the paper's comparison).")
    for g in groups:
        print(f"seeds of one recipe ({', '.join(g['runs'])}), fitted jointly: A = {g['A']:.3f} {iv(g['A_interval'])}, "
              f"B = {g['B']:.2f} {iv(g['B_interval'], '.2f')}, R@C_eq = {g['predicted']:.3f} "
              f"{iv(g['predicted_interval'])}; seed sd of A alone {g['seed_sd_A']:.3f}")
    for r in rows:
        for w in r["warnings"]:
            print(f"warning: {r['run']}: {w}")

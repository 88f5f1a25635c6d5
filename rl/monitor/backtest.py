"""Backtest the forecast: refit each finished run on its first 25%, 50%, 75%
of compute and compare the forecast of the final evaluation with what happened.

A forecast is only worth its interval if the interval covers what later
happens. The coverage measured in docs/monitor.md is on synthetic curves,
where the sigmoid is the truth and the noise is independent; a real run has
neither. Here the runs themselves are the test set: at each cut the fit sees
only the evaluations with x <= fraction * x_final (what the live fit would
have seen at that point of the run, burn-in included, since the burn-in is a
fraction of the compute seen), forecasts R(x_final) with its interval, and
the error is forecast - final observed pass rate. Over several runs and cuts,
the calibration table counts how often the 50/80/90% intervals covered the
final evaluation.

Departures and choices:
- Each fit is called as the run's live fit calls it (`fit_as_the_run`): the
  run's own `monitor.*` settings (method, burn-in, bootstrap, resample,
  prior on B) and its per-prompt results from evals.jsonl when it recorded
  them, so the backtest judges the forecast the run actually logged;
  `bootstrap` can be overridden for speed.
- A cut needs `monitor.min_points` evaluations after burn-in, as the live fit
  does. A cut that has fewer is reported as too short (with how many
  evaluations it would take) instead of fitted; a run with no fittable cut
  is an error.
- What is forecast is one evaluation, so coverage is judged with the band
  for an evaluation (FitResult.predicted_eval_interval): the curve's
  interval widened by the scatter of one evaluation about the curve, which
  the fit measures on the points it saw (their sampling noise times the
  dispersion: a policy that wobbles between evaluations by more than
  sampling explains widens it). The curve's own interval is kept
  (`curve_intervals`), and the final evaluation's sampling error (from its
  per-prompt results) is reported beside it, so a reader can tell a miss by
  the curve from a miss by the noise of one evaluation.
- The final evaluation is one noisy point; each run is also fitted on all of
  its evaluations (`fitted_end`, the curve at x_final) and each cut's error
  against that smoothed end is reported beside the error against the last
  evaluation (`error_vs_fitted_end`).
- Seeds of one recipe are also backtested fitted together
  (rl/monitor/backtest_joint.py), their cuts made and judged the same way.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from core.errors import UserError

DEFAULT_FRACTIONS = (0.25, 0.5, 0.75)
DEFAULT_LEVELS = (0.5, 0.8, 0.9)


@dataclasses.dataclass
class Cut:
    """One refit on the first `fraction` of a run's compute."""

    fraction: float
    x_cut: float  # fraction * x_final: points with x <= x_cut are fitted
    n_evals: int  # evaluations with 0 < x <= x_cut (before burn-in)
    n_points: int | None = None  # points the fit used (after burn-in); None when too short
    forecast: float | None = None  # fitted R(x_final)
    intervals: dict[float, tuple[float, float]] = dataclasses.field(default_factory=dict)  # level -> band of an evaluation
    curve_intervals: dict[float, tuple[float, float]] = dataclasses.field(default_factory=dict)  # level -> curve's interval
    error: float | None = None  # forecast - final observed
    error_vs_fitted_end: float | None = None  # forecast - the full run's fitted curve at x_final
    warnings: list[str] = dataclasses.field(default_factory=list)
    short: str | None = None  # why this cut was not fitted
    fit: object = dataclasses.field(default=None, repr=False)  # the FitResult at the widest level

    def covered(self, level: float, y: float) -> bool | None:
        """Whether the `level` interval holds y (None when not fitted at that level)."""
        iv = self.intervals.get(level)
        if iv is None or not all(math.isfinite(v) for v in iv):
            return None
        return iv[0] <= y <= iv[1]


@dataclasses.dataclass
class RunBacktest:
    """All cuts of one run and the final evaluation they forecast."""

    run_dir: Path
    label: str
    x_name: str
    x_final: float
    y_final: float
    y_final_se: float | None  # sampling standard error of the final evaluation (evals.jsonl)
    n_evals: int  # evaluations with x > 0
    min_points: int
    cuts: list[Cut]
    fitted_end: float | None = None  # the fit on all the run's evaluations, at x_final (None if it failed)
    points: object = dataclasses.field(default=None, repr=False)  # what was fitted (sources.Points)

    def to_dict(self) -> dict:
        cuts = []
        for c in self.cuts:
            d = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)
                 if f.name not in ("fit", "intervals", "curve_intervals")}
            d["intervals"] = {f"{lvl:g}": list(iv) for lvl, iv in c.intervals.items()}
            d["curve_intervals"] = {f"{lvl:g}": list(iv) for lvl, iv in c.curve_intervals.items()}
            d["covered"] = {f"{lvl:g}": c.covered(lvl, self.y_final) for lvl in c.intervals}
            cuts.append(d)
        return {"run": self.label, "run_dir": str(self.run_dir), "x": self.x_name, "x_final": self.x_final,
                "y_final": self.y_final, "y_final_se": self.y_final_se, "fitted_end": self.fitted_end, "n_evals": self.n_evals,
                "min_points": self.min_points, "cuts": cuts}


# ---------------------------------------------------------------- settings of the run


SETTINGS = ("method", "burn_in_fraction", "bootstrap", "interval", "min_points", "target_budget", "resample",
            "prior_B")


def monitor_settings(run_dir: Path) -> dict:
    """The run's own fit settings (config.yaml `monitor:`), defaults where absent."""
    import yaml

    from rl.monitor.config import MonitorConfig

    defaults = MonitorConfig()
    try:
        cfg = yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}
        mon = cfg.get("monitor") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        mon = {}
    return {k: mon.get(k, getattr(defaults, k, None)) for k in SETTINGS}


def fit_as_the_run(points, settings: dict, *, keep=None, interval: float | None = None,
                   budget: float | None = None):
    """fit_sigmoid on a run's points (those where `keep`) called as the run's
    live fit calls it: its settings, and its per-prompt results when it
    recorded them (points weighted by their sampling noise)."""
    from rl.monitor.fit import fit_sigmoid

    pts = points if keep is None else points.subset(keep)
    kw = dict(method=settings["method"], burn_in=settings["burn_in_fraction"], bootstrap=int(settings["bootstrap"]),
              interval=float(interval or settings["interval"]), budget=budget, seed=0)
    if getattr(pts, "counts", None) is not None:
        kw["counts"] = pts.counts
    if settings.get("resample"):
        kw["resample"] = settings["resample"]
    if settings.get("prior_B"):
        kw["prior_B"] = True
    return fit_sigmoid(pts.x, pts.y, **kw)


def final_se(points) -> float | None:
    """Standard error of the final evaluation's pass rate from its per-prompt
    results (evals.jsonl): the spread a re-evaluation of the same policy on
    the same prompts would show (only the k samples per prompt are noise)."""
    counts = getattr(points, "counts", None)
    if counts is None or len(counts) == 0:
        return None
    return float(math.sqrt(counts.variances()[-1]))


# ---------------------------------------------------------------- one run


def _check_levels(fractions, levels) -> None:
    for f in fractions:
        if not 0.0 < f < 1.0:
            raise UserError(f"backtest: a fraction of compute must be in (0, 1), got {f:g}")
    for lvl in levels:
        if not 0.0 < lvl < 1.0:
            raise UserError(f"backtest: an interval level must be in (0, 1), got {lvl:g}")


def evaluations_needed(fraction: float, min_points: int) -> int:
    """About how many evaluations (step 0 included) a run needs so that the
    cut at `fraction` of its compute holds `min_points` of them, evaluations
    being evenly spread over compute."""
    return math.ceil(min_points / fraction) + 1


def _too_short(count: str, fraction: float, need: int) -> str:
    return (f"{count} up to {fraction:.0%} of compute, the fit needs {need} after burn-in (monitor.min_points): "
            f"about {evaluations_needed(fraction, need)} evaluations in the run")


def _fitted_end(pts, settings, x_final) -> float | None:
    """The run's fit on all its evaluations, at x_final: its end with the
    last evaluation's noise smoothed out by the curve. Only the point estimate
    is used, so no bootstrap is run for it."""
    try:
        return float(fit_as_the_run(pts, {**settings, "bootstrap": 0}, budget=x_final).predicted)
    except UserError:
        return None


def _fit_cut(pts, x_final, y_final, fraction, levels, settings, fitted_end=None) -> Cut:
    x_cut = fraction * x_final
    keep = pts.x <= x_cut
    n_evals = int(np.sum(keep & (pts.x > 0)))
    cut = Cut(fraction=fraction, x_cut=x_cut, n_evals=n_evals)
    need = settings["min_points"]
    count = f"{n_evals} evaluation{'' if n_evals == 1 else 's'}"
    if n_evals < need:
        cut.short = _too_short(count, fraction, need)
        return cut
    for level in sorted(levels, reverse=True):  # same seed: same refits, only the quantiles differ
        try:
            fit = fit_as_the_run(pts, settings, keep=keep, interval=level, budget=x_final)
        except UserError as err:
            cut.short = f"{_too_short(count, fraction, need)} ({err})"
            return cut
        if fit.n_points < need:
            cut.short = _too_short(f"{fit.n_points} evaluations after burn-in", fraction, need)
            return cut
        if cut.fit is None:
            cut.fit, cut.n_points, cut.forecast = fit, fit.n_points, fit.predicted
            cut.error, cut.warnings = fit.predicted - y_final, list(fit.warnings)
            if fitted_end is not None:
                cut.error_vs_fitted_end = fit.predicted - fitted_end
        cut.intervals[level] = tuple(float(v) for v in fit.predicted_eval_interval)
        cut.curve_intervals[level] = tuple(float(v) for v in fit.predicted_interval)
    cut.intervals = dict(sorted(cut.intervals.items()))
    cut.curve_intervals = dict(sorted(cut.curve_intervals.items()))
    return cut


def backtest_run(run_dir: str | Path, fractions=DEFAULT_FRACTIONS, levels=DEFAULT_LEVELS, *,
                 bootstrap: int | None = None, label: str | None = None) -> RunBacktest:
    """Refit RUN_DIR at each fraction of its compute and forecast its final
    evaluation. Cuts with too few evaluations come back with `short` set;
    raises UserError only for a folder that is not a run."""
    from rl.monitor.sources import load_points

    _check_levels(fractions, levels)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    pts = load_points(run_dir)
    settings = monitor_settings(run_dir)
    if bootstrap is not None:
        settings["bootstrap"] = int(bootstrap)
    x_final, y_final = float(pts.x[-1]), float(pts.y[-1])
    end = _fitted_end(pts, settings, x_final)
    cuts = [_fit_cut(pts, x_final, y_final, f, levels, settings, end) for f in sorted(fractions)]
    return RunBacktest(run_dir=run_dir, label=label or run_dir.name, x_name=pts.x_name, x_final=x_final,
                       y_final=y_final, y_final_se=final_se(pts), fitted_end=end, n_evals=int(np.sum(pts.x > 0)),
                       min_points=int(settings["min_points"]), cuts=cuts, points=pts)


def require_fitted(result: RunBacktest) -> None:
    """UserError (one line) when no cut of a run could be fitted."""
    if any(c.forecast is not None for c in result.cuts):
        return
    last = max(result.cuts, key=lambda c: c.fraction)
    need = evaluations_needed(last.fraction, result.min_points)
    raise UserError(
        f"{result.run_dir}: too short to backtest: {result.n_evals} evaluations after step 0, "
        f"{last.n_evals} of them up to {last.fraction:.0%} of compute, where the fit needs {result.min_points} "
        f"(monitor.min_points); the run needs about {need} evaluations (more steps or a smaller eval.every)"
    )


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Short unique names: the folder name, with its parent when two collide."""
    names = [Path(d).resolve().name for d in run_dirs]
    out, taken = [], set()
    for d, name in zip(run_dirs, names):
        label = name if names.count(name) == 1 else f"{Path(d).resolve().parent.name}/{name}"
        base, i = label, 2
        while label in taken:
            label, i = f"{base}#{i}", i + 1
        taken.add(label)
        out.append(label)
    return out


def backtest(run_dirs: list[str | Path], fractions=DEFAULT_FRACTIONS, levels=DEFAULT_LEVELS, *,
             bootstrap: int | None = None, strict: bool = True) -> list[RunBacktest]:
    """Backtest every run; with `strict`, a run with no fittable cut raises UserError."""
    paths = [Path(d) for d in run_dirs]
    results = [backtest_run(d, fractions, levels, bootstrap=bootstrap, label=lab)
               for d, lab in zip(paths, run_labels(paths))]
    if strict:
        for r in results:
            require_fitted(r)
    return results


# ---------------------------------------------------------------- over runs


def calibration(results: list[RunBacktest], levels=DEFAULT_LEVELS) -> list[dict]:
    """Per level: how many fitted cuts' intervals covered the final evaluation,
    over all runs and cuts and per fraction of compute."""
    rows = []
    for level in levels:
        by_frac: dict[float, list[int]] = {}
        for r in results:
            for c in r.cuts:
                hit = c.covered(level, r.y_final)
                if hit is None:
                    continue
                tally = by_frac.setdefault(c.fraction, [0, 0])
                tally[0] += int(hit)
                tally[1] += 1
        covered = sum(t[0] for t in by_frac.values())
        total = sum(t[1] for t in by_frac.values())
        rows.append({"level": level, "covered": covered, "total": total,
                     "rate": covered / total if total else None,
                     "by_fraction": {f: tuple(t) for f, t in sorted(by_frac.items())}})
    return rows


def mean_abs_error(results: list[RunBacktest], against: str = "error") -> dict[float, float]:
    """Mean |forecast - final| per fraction of compute, over the runs fitted
    there; `against="error_vs_fitted_end"` uses the full run's fitted end."""
    errs: dict[float, list[float]] = {}
    for r in results:
        for c in r.cuts:
            e = getattr(c, against)
            if e is not None:
                errs.setdefault(c.fraction, []).append(abs(e))
    return {f: float(np.mean(v)) for f, v in sorted(errs.items())}


def to_json(results: list[RunBacktest], levels=DEFAULT_LEVELS, groups=()) -> dict:
    """Everything `asymptote backtest --json` prints."""
    joint = []
    for g in groups:
        summary = _summary(g.runs, levels)
        joint.append({**g.to_dict(), **{k: v for k, v in summary.items() if k not in ("runs", "levels")}})
    return {**_summary(results, levels), "joint": joint}


def _summary(results: list[RunBacktest], levels) -> dict:
    cal = calibration(results, levels)
    return {
        "levels": list(levels),
        "runs": [r.to_dict() for r in results],
        "calibration": [{**row, "by_fraction": {f"{f:g}": list(t) for f, t in row["by_fraction"].items()}}
                        for row in cal],
        "mean_abs_error": {f"{f:g}": v for f, v in mean_abs_error(results).items()},
        "mean_abs_error_vs_fitted_end": {f"{f:g}": v for f, v in
                                         mean_abs_error(results, "error_vs_fitted_end").items()},
    }


def _num(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)


def format_text(results: list[RunBacktest], levels=DEFAULT_LEVELS, groups=()) -> str:
    """The table `asymptote backtest` prints: one row per run and cut, then the calibration;
    then the same for each group of seeds fitted jointly (rl/monitor/backtest_joint.py)."""
    wide = max(levels)
    axes = sorted({r.x_name for r in results})
    lines = [f"Forecast of each run's final evaluation from refits on its first part of compute "
             f"(x: {', '.join(axes)}; interval {wide:.0%}).", ""]
    notes = _table(results, levels, lines)
    for g in groups:
        lines += ["", f"Seeds of one recipe fitted jointly at each cut ({', '.join(g.labels)}: shared A and B, "
                  "each run its own C_mid, R0 and noise; the band adds each run's own evaluation scatter).",
                  "Shared A at each cut: " + ", ".join(f"{f:.0%} {a:.3f}" for f, a in g.A.items()), ""]
        notes += _table(g.runs, levels, lines)
    if notes:
        lines += [""] + list(dict.fromkeys(notes))
    return "\n".join(lines)


def _table(results: list[RunBacktest], levels, lines: list[str]) -> list[str]:
    """Append the rows, mean |error| and calibration of `results` to `lines`; return the notes."""
    wide = max(levels)
    head = (f"{'run':<20} {'cut':>4} {'evals':>5} {'x at cut':>10} {'forecast':>8} {'interval':>16} "
            f"{'final':>6} {'±se':>6} {'error':>7} {'covered':>7}")
    lines += [head, "-" * len(head)]
    notes = []
    for r in results:
        for c in r.cuts:
            pre = f"{r.label[:20]:<20} {c.fraction:>4.0%} {c.n_evals:>5} {c.x_cut:>10.4g}"
            if c.forecast is None:
                lines.append(f"{pre} {'too short':>8}")
                notes.append(f"{r.label} at {c.fraction:.0%}: {c.short}")
                continue
            iv = c.intervals.get(wide, (math.nan, math.nan))
            hit = c.covered(wide, r.y_final)
            lines.append(f"{pre} {c.forecast:>8.3f} {'[' + _num(iv[0]) + ', ' + _num(iv[1]) + ']':>16} "
                         f"{r.y_final:>6.3f} {_num(r.y_final_se):>6} {c.error:>+7.3f} "
                         f"{'-' if hit is None else ('yes' if hit else 'no'):>7}")
            notes += [f"{r.label} at {c.fraction:.0%}: warning: {w}" for w in c.warnings]
    mae = mean_abs_error(results)
    if mae:
        lines += ["", "mean |error|: " + ", ".join(f"{f:.0%} of compute {v:.3f}" for f, v in mae.items())]
    mae_end = mean_abs_error(results, "error_vs_fitted_end")
    if mae_end:
        ends = ", ".join(f"{r.label} {_num(r.fitted_end)}" for r in results)
        lines += ["mean |error| against the fitted end (the fit on all evaluations at the final x: "
                  f"{ends}): " + ", ".join(f"{f:.0%} of compute {v:.3f}" for f, v in mae_end.items())]
    lines += ["", "Calibration: how often the band for an evaluation from a cut covered the final evaluation "
              "(the curve's interval widened by one evaluation's scatter about the curve).",
              _calibration_text(calibration(results, levels))]
    return notes


def _calibration_text(rows: list[dict]) -> str:
    fracs = sorted({f for row in rows for f in row["by_fraction"]})
    head = f"{'level':>6} {'all':>12} " + " ".join(f"{f:>8.0%}" for f in fracs)
    out = [head]
    for row in rows:
        rate = "" if row["rate"] is None else f" ({row['rate']:.2f})"
        cells = " ".join(f"{'%d/%d' % row['by_fraction'][f] if f in row['by_fraction'] else '-':>8}" for f in fracs)
        tally = f"{row['covered']}/{row['total']}{rate}"
        out.append(f"{row['level']:>6.0%} {tally:>12} {cells}")
    return "\n".join(out)

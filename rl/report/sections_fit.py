"""Report sections about the forecast: the curve with its fit, the backtest,
and the comparison of several runs at equal compute.

The fit is redone here with the run's own monitor settings (fit.json holds
the numbers but not the bootstrap samples the band is drawn from); a run
with too few evaluations gets its points and a note instead of a fit.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from core.errors import UserError
from rl.report import figures
from rl.report.html import Cell, esc, figure, interval, note, num, section, table, warnings


@dataclasses.dataclass
class RunFit:
    """A run's fit on all its evaluations, or why there is none."""

    fit: object = None  # rl.monitor.fit.FitResult
    why_not: str | None = None


def fit_run(run, *, bootstrap: int | None = None) -> RunFit:
    """Fit R(C) the way the run's live monitor does (its settings, its budget);
    `bootstrap` overrides monitor.bootstrap."""
    from rl.monitor.backtest import fit_as_the_run, monitor_settings

    if run.points is None:
        return RunFit(why_not=run.points_error)
    x = run.points.x
    settings = monitor_settings(run.run_dir)
    if bootstrap is not None:
        settings["bootstrap"] = int(bootstrap)
    need = int(settings["min_points"])
    if int(np.sum(x > 0)) < need:
        return RunFit(why_not=f"{int(np.sum(x > 0))} evaluations after step 0 so far; the first fit needs "
                              f"{need} after burn-in (monitor.min_points)")
    budget = settings["target_budget"] or 4.0 * float(x.max())
    try:
        fit = fit_as_the_run(run.points, settings, budget=float(budget))
    except UserError as err:
        return RunFit(why_not=str(err))
    if fit.n_points < need:
        return RunFit(why_not=f"{fit.n_points} evaluations after burn-in so far; the first fit needs {need} "
                              "(monitor.min_points)")
    return RunFit(fit=fit)


def curve_section(runs, fits: list[RunFit]) -> str:
    from rl.monitor.plots import plot_curve

    parts, rows = [], []
    for run, rf in zip(runs, fits):
        if run.points is None:
            parts.append(note(f"{run.label}: {run.points_error}"))
            continue
        x_label, y_label = run.points.x_name, run.points.y_name
        if rf.fit is None:
            parts.append(f"<h3>{esc(run.label)}</h3>" + note(f"No fit yet: {rf.why_not}.")
                         + figure(figures.points_figure(run, x_label, y_label), f"{run.label} evaluations"))
            continue
        f = rf.fit
        uri = figures.file_uri(lambda p, f=f: plot_curve(f, p, x_label=x_label, y_label=y_label))
        parts.append(f"<h3>{esc(run.label)}</h3>" + figure(uri, f"{run.label} learning curve with the fit")
                     + warnings(f.warnings))
        rows.append([run.label, len(run.points.y), f"{f.interval:.0%}", f"{f.A:.3f}", interval(f.A_interval),
                     f"{f.B:.2f}", interval(f.B_interval, ".2f"), num(f.C_mid), f"{f.R0:.3f}",
                     num(f.budget), f"{f.predicted:.3f}", interval(f.predicted_interval), f"{f.r2:.3f}",
                     len(f.warnings)])
    head = ["run", "evals", "level", "A", "A interval", "B", "B interval", "C_mid", "R0",
            "budget", "forecast", "forecast interval", "R²", "warnings"]
    tab = table(head, rows) if rows else ""
    return section("curve", "Learning curve and forecast",
                   "Held-out pass rate against compute with the ScaleRL sigmoid fitted as the run's live monitor "
                   "fits it: band = interval of the expected pass rate, dashed = extrapolation to the budget, "
                   "hollow points left of the dotted line = burn-in (not fitted), diamond = R0 from step 0.",
                   tab + "".join(parts))


def backtest_section(runs, results, levels, groups=()) -> str:
    wide = max(levels)
    parts, notes = [], []
    for run, res in zip(runs, results):
        if isinstance(res, str):
            notes.append(f"{run.label}: {res}")
        elif any(c.fit is not None for c in res.cuts):
            parts.append(figure(figures.backtest_figure(res, run.points, run.points.x_name),
                                f"{res.label} backtest"))
    body, more = _backtest_table([r for r in results if not isinstance(r, str)], levels)
    for g in groups:
        table_html, _ = _backtest_table(g.runs, levels)
        body += (f"<h3>Seeds fitted jointly: {esc(', '.join(g.labels))}</h3>"
                 "<p>At each cut the seeds' first parts are fitted together (shared A and B, each run its own "
                 "C_mid, R0 and noise) and each run's final evaluation is forecast from that fit. Shared A: "
                 + esc(", ".join(f"{a:.3f} at {f:.0%}" for f, a in g.A.items())) + ".</p>" + table_html)
    body += "".join(note(n) for n in notes + more) + '<div class="figs">' + "".join(parts) + "</div>"
    return section("backtest", "Backtest",
                   f"The fit redone on the first 25%, 50% and 75% of each run's compute, forecasting the final "
                   f"evaluation (the latest one while a run is going on) with its {wide:.0%} band; error = "
                   "forecast - observed. The calibration counts how often the intervals covered what happened "
                   "(asymptote backtest).", body)


def _backtest_table(fitted, levels) -> tuple[str, list[str]]:
    """Rows, mean |error| and calibration of backtested runs as HTML, and the notes of cuts too short."""
    from rl.monitor.backtest import calibration, mean_abs_error

    wide = max(levels)
    rows, notes = [], []
    for res in fitted:
        for c in res.cuts:
            if c.forecast is None:
                rows.append([res.label, f"{c.fraction:.0%}", c.n_evals, num(c.x_cut), Cell("too short", "na"),
                             "-", f"{res.y_final:.3f}", "-", "-"])
                notes.append(f"{res.label} at {c.fraction:.0%}: {c.short}")
                continue
            hit = c.covered(wide, res.y_final)
            rows.append([res.label, f"{c.fraction:.0%}", c.n_evals, num(c.x_cut), f"{c.forecast:.3f}",
                         interval(c.intervals.get(wide)),
                         f"{res.y_final:.3f}" + ("" if res.y_final_se is None else f" ± {res.y_final_se:.3f}"),
                         f"{c.error:+.3f}", "-" if hit is None else Cell("yes", "hit") if hit else Cell("no", "miss")])
    if not rows:
        return "", notes
    body = table(["run", "cut", "evals", "x at cut", "forecast", f"{wide:.0%} band for an evaluation",
                  "final (± se)", "error", "covered"], rows)
    mae = mean_abs_error(fitted)
    if mae:
        body += "<p>Mean |error|: " + esc(", ".join(f"{v:.3f} at {f:.0%} of compute" for f, v in mae.items()))
        mae_end = mean_abs_error(fitted, "error_vs_fitted_end")
        if mae_end:
            body += esc("; against each run's fitted end (its fit on all evaluations, at the final x): "
                        + ", ".join(f"{v:.3f} at {f:.0%}" for f, v in mae_end.items()))
        body += ".</p>"
    cal = calibration(fitted, levels)
    fracs = sorted({f for row in cal for f in row["by_fraction"]})
    cal_rows = [[f"{row['level']:.0%}", f"{row['covered']}/{row['total']}", num(row["rate"], ".2f"),
                 *(("%d/%d" % row["by_fraction"][f]) if f in row["by_fraction"] else "-" for f in fracs)]
                for row in cal]
    body += "<h3>Calibration</h3>" + table(["nominal", "covered", "rate", *(f"at {f:.0%}" for f in fracs)], cal_rows)
    return body, notes


def compare_section(runs, fits: list[RunFit]) -> str:
    from rl.monitor.plots import plot_compare

    why = ("Several runs at equal compute: the largest compute every run reached, where the fitted and the "
           "observed pass rates are read (asymptote compare adds the fixed-A efficiency comparison).")
    pairs = [(run, rf.fit) for run, rf in zip(runs, fits) if rf.fit is not None]
    if len(runs) < 2:
        return section("compare", "Comparison at equal compute", why,
                       note("One run in this report: nothing to compare. Pass several run directories to "
                            "`asymptote report` to compare them."))
    if len(pairs) < 2:
        return section("compare", "Comparison at equal compute", why,
                       note("Fewer than two runs have a fit yet: nothing to compare."))
    x_equal = min(float(run.points.x.max()) for run, _ in pairs)
    rows = []
    for run, f in pairs:
        lo, hi = f.band(np.array([x_equal]))
        rows.append([run.label, f"{f.A:.3f}", interval(f.A_interval), f"{f.B:.2f}", num(f.C_mid),
                     f"{float(f(x_equal)):.3f}", interval((float(lo[0]), float(hi[0]))),
                     f"{float(np.interp(x_equal, run.points.x, run.points.y)):.3f}", f"{float(run.points.y[-1]):.3f}"])
    labels = [run.label for run, _ in pairs]
    x_label = pairs[0][0].points.x_name
    uri = figures.file_uri(lambda p: plot_compare([f for _, f in pairs], labels, p, x_equal=x_equal,
                                                  x_label=x_label, y_label=pairs[0][0].points.y_name))
    body = (f"<p>Equal compute: {esc(num(x_equal))} ({esc(x_label)}).</p>"
            + table(["run", "A", "A interval", "B", "C_mid", "fit at equal compute", "band",
                     "observed at equal compute", "final"], rows)
            + figure(uri, "runs compared"))
    return section("compare", "Comparison at equal compute", why, body)

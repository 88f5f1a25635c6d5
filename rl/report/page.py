"""Build the report page for one or several runs and write it atomically.

One self-contained HTML file: the fit's figures are inline PNG data URIs,
the per-step panels inline SVG, the style sheet inline; there is no
JavaScript and no external URL, so the page opens offline, from a copied
run directory or an email attachment. Section ids are stable (summary,
curve, backtest, rewards, lengths, training, mismatch, timing, ledger, hub,
config, compare): tests and links use them.

The controller calls `write_report([run_dir], run_dir / "report.html")`
after each evaluation. On CPU its driver's CPU time is counted in the
compute ledger, so that call must be cheap (Laplace intervals by default,
SVG panels) and a reader must never see a half-written page (it is written
to a temporary file and renamed).
"""
from __future__ import annotations

import contextlib
import datetime
import os
from pathlib import Path

from core.errors import UserError
from rl.report import sections_fit, sections_run
from rl.report.html import page
from rl.report.runs import load_run

NAV = (("summary", "runs"), ("curve", "curve"), ("backtest", "backtest"), ("rewards", "reward"),
       ("lengths", "lengths"), ("training", "training"), ("mismatch", "mismatch"), ("timing", "timing"),
       ("ledger", "ledger"), ("hub", "hub"), ("config", "config"), ("compare", "compare"))
SECTION_IDS = tuple(sid for sid, _ in NAV)


def load_runs(run_dirs: list[Path]) -> list:
    """Read every run; one line of UserError for a folder that is not a run or
    for runs whose fits use different compute axes."""
    from rl.monitor.backtest import run_labels

    if not run_dirs:
        raise UserError("report: no run directory given")
    paths = [Path(d) for d in run_dirs]
    runs = [load_run(d, label) for d, label in zip(paths, run_labels(paths))]
    axes = {r.points.x_name for r in runs if r.points is not None}
    if len(axes) > 1:
        named = ", ".join(f"{r.run_dir}: {r.points.x_name}" for r in runs if r.points is not None)
        raise UserError(f"report: the runs' fits use different x axes ({named}); "
                        "report them separately or rerun on one monitor.x_axis")
    return runs


def _backtests(runs, levels, bootstrap: int | None) -> list:
    from rl.monitor.backtest import DEFAULT_FRACTIONS, backtest_run

    out = []
    for run in runs:
        if run.points is None:
            out.append(run.points_error)
            continue
        try:
            out.append(backtest_run(run.run_dir, DEFAULT_FRACTIONS, levels, bootstrap=bootstrap, label=run.label))
        except UserError as err:
            out.append(str(err))
    return out


def _joint_backtests(backtests, levels, bootstrap: int | None) -> list:
    """Seeds of one recipe among the backtested runs, backtested fitted jointly."""
    from rl.monitor.backtest_joint import backtest_groups

    fitted = [b for b in backtests if not isinstance(b, str) and any(c.forecast is not None for c in b.cuts)]
    return backtest_groups(fitted, levels, bootstrap=bootstrap)


def build_page(run_dirs: list[Path], *, bootstrap: int | None = None) -> str:
    """The report's HTML for RUN_DIRS (several runs: one page comparing them).
    `bootstrap` overrides the runs' monitor.bootstrap for every fit (0: the
    Laplace approximation, ~15x cheaper)."""
    from rl.monitor.backtest import DEFAULT_LEVELS

    runs = load_runs(run_dirs)
    fits = [sections_fit.fit_run(r, bootstrap=bootstrap) for r in runs]
    backtests = _backtests(runs, DEFAULT_LEVELS, bootstrap)
    html = {
        "summary": sections_run.summary_section(runs, fits),
        "curve": sections_fit.curve_section(runs, fits),
        "backtest": sections_fit.backtest_section(runs, backtests, DEFAULT_LEVELS,
                                                  _joint_backtests(backtests, DEFAULT_LEVELS, bootstrap)),
        "rewards": sections_run.rewards_section(runs),
        "lengths": sections_run.lengths_section(runs),
        "training": sections_run.training_section(runs),
        "mismatch": sections_run.mismatch_section(runs),
        "timing": sections_run.timing_section(runs),
        "ledger": sections_run.ledger_section(runs),
        "hub": sections_run.hub_section(runs),
        "config": sections_run.config_section(runs),
        "compare": sections_fit.compare_section(runs, fits),
    }
    names = ", ".join(r.label for r in runs)
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    axis = next((r.points.x_name for r in runs if r.points is not None), "no evaluations yet")
    subtitle = f"{len(runs)} run{'s' if len(runs) > 1 else ''}; x axis {axis}; written {when} by asymptote report"
    return page(f"Asymptote report: {names}", subtitle, [(sid, label, html[sid]) for sid, label in NAV])


def write_report(run_dirs: list[Path], out: Path, *, bootstrap: int | None = 0) -> Path:
    """Write the report for RUN_DIRS to OUT atomically and return OUT.

    The default `bootstrap=0` (Laplace intervals) is for the controller's call
    after each evaluation: on CPU the driver's own CPU time counts in the
    compute ledger, so the live page must be cheap (well under a second of
    CPU for a 150-step run). `asymptote report` passes None: each run's own
    monitor.bootstrap, as its live fit used.

    Raises UserError (one line) for a folder that is not a run, runs on
    different x axes, or an output path that cannot be written."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file name for the report (e.g. {out / 'report.html'})")
    text = build_page(list(run_dirs), bootstrap=bootstrap)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UserError(f"{out}: cannot write the report ({err.strerror or err})") from None
    return out

"""`asymptote backtest` and `asymptote report`: judge a run's forecast against
what happened, and write its report page.

Registered from rl/cli.py's VERB_MODULES; numpy, scipy and matplotlib are
imported inside the handlers so `asymptote --help` stays fast.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_FRACTIONS = (0.25, 0.5, 0.75)  # rl.monitor.backtest.DEFAULT_FRACTIONS, without importing numpy here
DEFAULT_LEVELS = (0.5, 0.8, 0.9)


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"a fraction of compute must be in (0, 1), got {text}")
    return v


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "backtest", help="refit runs on part of their compute and check the forecast of their final evaluation",
        description="Refit each run on its first 25%, 50%, 75% of compute (its own monitor settings), forecast "
                    "the final evaluation with its interval, and report the error and how often the 50/80/90% "
                    "intervals covered what happened. Runs that are seeds of one recipe are also backtested "
                    "fitted jointly (shared A and B).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--fractions", type=_fraction, nargs="+", default=list(DEFAULT_FRACTIONS), metavar="F",
                   help="fractions of each run's compute to refit at (default 0.25 0.5 0.75)")
    p.add_argument("--bootstrap", type=int, default=None, metavar="N",
                   help="bootstrap refits per fit (default: the run's monitor.bootstrap; 0: Laplace, faster)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=backtest_cmd)

    p = subparsers.add_parser(
        "report", help="write one self-contained HTML page about one or several runs",
        description="Write an offline HTML report: the curve with its fit and forecast, the backtest, reward, "
                    "lengths, mismatch, timing, the compute ledger, hub counters, the config and, for several "
                    "runs, the comparison at equal compute.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="where to write the page (default RUN_DIR/report.html for one run, ./report.html for several)")
    p.add_argument("--bootstrap", type=int, default=None, metavar="N",
                   help="bootstrap refits per fit (default: each run's monitor.bootstrap; 0: Laplace, faster)")
    p.set_defaults(func=report_cmd)


def _check_bootstrap(n: int | None) -> None:
    from core.errors import UserError

    if n is not None and (n < 0 or 0 < n < 20):
        raise UserError(f"--bootstrap {n}: use 0 (Laplace) or at least 20 refits")


def backtest_cmd(args) -> int:
    from rl.monitor.backtest import backtest, format_text, to_json
    from rl.monitor.backtest_joint import backtest_groups

    _check_bootstrap(args.bootstrap)
    results = backtest(args.run_dirs, sorted(set(args.fractions)), DEFAULT_LEVELS, bootstrap=args.bootstrap)
    groups = backtest_groups(results, DEFAULT_LEVELS, bootstrap=args.bootstrap)
    if args.json:
        print(json.dumps(to_json(results, DEFAULT_LEVELS, groups)))
    else:
        print(format_text(results, DEFAULT_LEVELS, groups))
    return 0


def report_cmd(args) -> int:
    from rl.report.page import write_report

    _check_bootstrap(args.bootstrap)
    dirs = [Path(d) for d in args.run_dirs]
    out = Path(args.output) if args.output else (dirs[0] / "report.html" if len(dirs) == 1 else Path("report.html"))
    print(f"report: {write_report(dirs, out, bootstrap=args.bootstrap)}")
    return 0

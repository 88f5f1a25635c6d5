"""How often a set of seeds meets the three-seed backtest bar, each seed forecast alone and the set jointly.

Backtests every run once at one fraction of its compute (rl/monitor/backtest.py,
each run's own monitor settings), then every set of `--size` runs jointly
(rl/monitor/backtest_joint.py: shared A and B, each seed forecast at its own
compute), and counts the sets whose mean |error| against the final
evaluation is at most `--mae` and whose 90% bands for an evaluation cover at
least `--covered` of its runs (the acceptance bar: 0.03 and 2 of 3). The runs
should be seeds of one recipe; the baseline is each seed's own forecast.

    python bench/backtest_sets.py RUN_DIR RUN_DIR RUN_DIR ... [--fraction 0.5] [--size 3] [--mae 0.03] [--covered 2]

~0.3 s a set with the runs' bootstrap of 200 (364 sets of 3 from 14 runs: ~2 min).
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from rl.monitor.backtest import backtest
from rl.monitor.backtest_joint import backtest_group


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--size", type=int, default=3)
    ap.add_argument("--mae", type=float, default=0.03)
    ap.add_argument("--covered", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    levels = (0.9,)
    runs = backtest(args.run_dirs, (args.fraction,), levels)
    alone = {r.label: (r.cuts[0].error, r.cuts[0].covered(0.9, r.y_final)) for r in runs}
    rows = []
    for group in itertools.combinations(runs, args.size):
        joint = backtest_group(list(group), levels)
        together = [(r.cuts[0].error, r.cuts[0].covered(0.9, r.y_final)) for r in joint.runs]
        rows.append(([alone[r.label] for r in group], together))
    print(f"{len(runs)} runs, {len(rows)} sets of {args.size}, cut at {args.fraction:.0%} of compute; "
          f"bar: mean |error| <= {args.mae:g} and {args.covered} of {args.size} covered by the 90% band")
    print(f"{'forecast':<18} {'sets meeting':>12} {'mean |error| <= bar':>19} {'covered >= bar':>14} "
          f"{'runs covered':>12} {'mean |error|':>12}")
    for name, k in (("alone [baseline]", 0), ("jointly", 1)):
        mae = np.array([np.mean([abs(e) for e, _ in r[k]]) for r in rows])
        cov = np.array([sum(bool(c) for _, c in r[k]) for r in rows])
        every = [c for r in rows for _, c in r[k]]
        ok = (mae <= args.mae) & (cov >= args.covered)
        print(f"{name:<18} {f'{ok.sum()} ({ok.mean():.0%})':>12} {int((mae <= args.mae).sum()):>19} "
              f"{int((cov >= args.covered).sum()):>14} {np.mean(every):>12.3f} {np.mean(mae):>12.3f}")
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""How right the half-compute forecast is, and how often its 90% interval covers, per ScaleRL Table 1 shape.

Each repetition simulates one run on a fixed evaluation set of 200 prompts x
k=4 samples (by default; a scenario may name another size) whose prompts
differ in difficulty (rl/monitor/fit_simulate.py; the spread matches
tiny-arith's evaluation: sd ~0.012 per evaluation at a pass rate of 0.5),
fits the evaluations in the first half of the compute, and forecasts the
pass rate at the end (2x that compute). The truth is the evaluation set's
expected pass rate: exactly the Table 1 sigmoid.

Baseline, run in the same invocation on the same data: the previous fit
(plain points, R0 pinned to the step-0 evaluation, residual bootstrap; today
`fit_sigmoid(..., r0_mode="pin")` without counts). Compared against it: the
default fit (points weighted by their per-prompt variance, step 0 a datum for
R0, bootstrap of per-prompt results), the same with the prior on B, and with
prompts resampled (intervals for a new evaluation set, which over-cover this
one's truth by design). `CR90` is the information limit: 1.645 x the
Cramer-Rao standard deviation of the forecast for this design and noise; no
unbiased method's p90 error can be much below it.

    python bench/bench_forecast.py [--reps 100] [--bootstrap 100] [--scenarios 8x41 8x16] [--shapes ...] [--methods ...]

A scenario SPANxN runs to SPAN x C_mid with N evaluations (step 0 included) of
200 prompts x k=4; SPANxNxPROMPTSxK names the evaluation set too (8x41x200x16:
the same run evaluated with 16 samples per prompt).
Takes ~15 min on one free core at the defaults (docs/monitor.md: 60 repetitions).
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from rl.monitor.fit_model import Problem, sigmoid
from rl.monitor.fit_simulate import TABLE1, Scenario, calibrate, simulate_evals

METHODS = {
    "previous fit [baseline]": dict(use_counts=False, r0_mode="pin"),
    "default": dict(),
    "default + prior on B": dict(prior_B=True),
    "resample prompts": dict(resample="prompts"),
}


def cr90(shape, sc: Scenario) -> float:
    """1.645 x the Cramer-Rao sd of the forecast at the end, fitting the first half."""
    C_mid, B, A = shape
    x = np.linspace(0.0, sc.span * C_mid, sc.n_evals)
    half = (x > 0) & (x <= x[-1] / 2 * (1 + 1e-12))
    _, counts = simulate_evals(A, B, C_mid, sc.R0, x, n_prompts=sc.n_prompts, k=sc.k, spread=sc.spread, seed=0)
    sd = np.sqrt(counts.variances())
    p = Problem(x[half], sigmoid(x[half], A, B, C_mid, sc.R0), sd[half], r0_obs=(sc.R0, sd[0]), a_bounds=(0, 1),
                cmid_bounds=(1e-9, 1e12), r0_bounds=(0, 1))
    t = p.pack(A, B, C_mid, sc.R0)
    J = p.jac(t)
    end = Problem(np.array([x[-1]]), np.zeros(1), 1.0, a_bounds=(0, 1), cmid_bounds=(1e-9, 1e12), r0_bounds=(0, 1))
    g = end.jac(t)[0]
    return 1.645 * math.sqrt(float(g @ np.linalg.pinv(J.T @ J) @ g))


def scenario(text: str) -> Scenario:
    """SPANxN or SPANxNxPROMPTSxK as a Scenario; one line naming the bad text otherwise."""
    parts = text.split("x")
    try:
        if len(parts) not in (2, 4):
            raise ValueError
        span, n, *rest = parts
        evaluation_set = dict(n_prompts=int(rest[0]), k=int(rest[1])) if rest else {}  # else Scenario's defaults
        return Scenario(span=float(span), n_evals=int(n), **evaluation_set)
    except ValueError:
        raise SystemExit(f"bench_forecast: --scenarios {text!r}: expected SPANxN or SPANxNxPROMPTSxK, "
                         "e.g. 8x41 or 8x41x200x16") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100, help="seeded repetitions per shape and scenario")
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--scenarios", nargs="+", default=["8x41", "8x16"], metavar="SPANxN[xPROMPTSxK]")
    ap.add_argument("--shapes", nargs="+", default=list(TABLE1), choices=list(TABLE1))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                    help=f"fits to run (default: all): {', '.join(repr(m) for m in METHODS)}")
    args = ap.parse_args()
    methods = {label: METHODS[label] for label in args.methods}
    t0 = time.perf_counter()
    for text in args.scenarios:
        sc = scenario(text)
        print(f"\n## run to {sc.span:g} C_mid, {sc.n_evals} evaluations ({sc.n_prompts} prompts x k={sc.k}), "
              f"fit the first half, forecast the end; {args.reps} repetitions, nominal 90% intervals")
        print(f"{'shape':<10} {'method':<24} {'fcst bias':>9} {'|e| p50':>7} {'|e| p90':>7} {'CR90':>6} "
              f"{'cover':>5} {'width':>6} | {'A bias':>7} {'|e| p90':>7} {'cover':>5} {'width':>6} {'wide':>5}")
        pooled = {label: [] for label in methods}
        for name in args.shapes:
            shape = TABLE1[name]
            limit = cr90(shape, sc)
            for label, kw in methods.items():
                s = calibrate(shape, sc, args.reps, bootstrap=args.bootstrap, **kw)
                pooled[label].append((s["n"], s["cov_pred"], s["cov_A"]))
                print(f"{name:<10} {label:<24} {s['pred_bias']:+9.4f} {s['pred_p50']:7.4f} {s['pred_p90']:7.4f} "
                      f"{limit:6.3f} {s['cov_pred']:5.2f} {s['width_pred']:6.3f} | {s['A_bias']:+7.4f} "
                      f"{s['A_p90']:7.4f} {s['cov_A']:5.2f} {s['width_A']:6.3f} {s['wide']:5.2f}"
                      + (f"  ({s['failed']} fits failed)" if s["failed"] else ""), flush=True)
        for label, rows in pooled.items():
            n = sum(r[0] for r in rows)
            cov_pred = sum(r[0] * r[1] for r in rows) / n
            cov_A = sum(r[0] * r[2] for r in rows) / n
            print(f"pooled over shapes, {label:<24}: forecast covered {cov_pred:.3f}, A covered {cov_A:.3f} "
                  f"({n} fits; sampling sd of a coverage near 0.9: {math.sqrt(0.09 / n):.3f})")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

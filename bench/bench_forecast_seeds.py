"""Three seeds forecast together against each alone: error and coverage of each seed's final evaluation.

Each repetition simulates three seeds of one recipe on a ScaleRL Table 1
shape (one A and B; each seed's C_mid drawn with a log sd of 0.1), each
evaluated 16 times up to 8 C_mid on 200 prompts x k=4 (rl/monitor/fit_simulate.py),
the policy wobbling between evaluations by a logit sd of `--noise` (0.1 gives
the dispersion of ~3 that the tiny-arith runs show). The seeds' first halves
are fitted jointly (rl/monitor/fit_joint.py: shared A and B, each seed its
own C_mid, R0 and noise), and each seed's final evaluation is forecast and
scored as `asymptote backtest` scores it: |forecast - final evaluation| and
whether the 90% band for one evaluation holds it. Baseline, on the same
simulated points in the same invocation: each seed fitted alone (the single
backtest). Both sides: bootstrap of per-prompt results, `--bootstrap` refits.

    python bench/bench_forecast_seeds.py [--reps 200] [--bootstrap 100] [--noise 0.1 0.0] [--shapes ...]

Takes ~1 min per shape and noise level at 200 repetitions on one free core
(the seeds alone take most of it).
"""
from __future__ import annotations

import argparse
import time

from rl.monitor.fit_simulate import TABLE1, Scenario, calibrate_joint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200, help="seeded repetitions (of three seeds) per shape")
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.0], help="logit sd of the policy's wobble")
    ap.add_argument("--shapes", nargs="+", default=list(TABLE1), choices=list(TABLE1))
    args = ap.parse_args()
    t0 = time.perf_counter()
    for noise in args.noise:
        print(f"\n## three seeds, 16 evaluations of 200 x 4 up to 8 C_mid, wobble {noise:g}; the first half "
              f"fitted, each seed's final evaluation forecast; {args.reps} repetitions, 90% bands")
        print(f"{'shape':<10} {'fit':<16} {'|e| p50':>7} {'|e| p90':>7} {'band covers':>11} {'curve covers':>12}")
        for name in args.shapes:
            s = calibrate_joint(TABLE1[name], Scenario(n_evals=16, policy_noise=noise), args.reps,
                                bootstrap=args.bootstrap)
            for fit, key in (("alone [baseline]", "alone"), ("joint", "joint")):
                print(f"{name:<10} {fit:<16} {s[key + '_end_p50']:7.4f} {s[key + '_end_p90']:7.4f} "
                      f"{s[key + '_cov_eval']:11.3f} {s[key + '_cov_curve']:12.3f}", flush=True)
            print(f"{name:<10} {'joint / alone':<16} {s['joint_end_p50'] / s['alone_end_p50']:7.2f} "
                  f"{s['joint_end_p90'] / s['alone_end_p90']:7.2f}   ({int(s['n'])} seeds)", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""How long one sigmoid fit of 100 points takes, against the paper's grid fit.

Baseline, measured in the same run: the paper-style grid (A step 0.005 x 100
C_mid values, curve_fit of B per cell). Also timed: the direct bounded fit
alone, and with the default 200-refit bootstrap (what the live monitor runs
after every evaluation) and the Laplace intervals.

    python bench/bench_fit.py [--repeats N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from rl.monitor.fit import fit_sigmoid, sigmoid


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 4 * 2542.0, 101)  # step 0 + 100 evaluations, ScaleRL baseline curve
    y = sigmoid(x, 0.61, 1.92, 2542.0, 0.30) + rng.normal(0, 0.01, x.size)
    y[0] = 0.30

    cases = {
        "grid (paper), no intervals [baseline]": dict(method="grid", bootstrap=0),
        "direct, Laplace intervals": dict(method="direct", bootstrap=0),
        "direct, bootstrap 200": dict(method="direct", bootstrap=200),
        "grid (paper), bootstrap 200": dict(method="grid", bootstrap=200),
    }
    times = {name: _time(lambda kw=kw: fit_sigmoid(x, y, **kw), args.repeats) for name, kw in cases.items()}
    base = times["grid (paper), no intervals [baseline]"]
    print(f"one fit of {x.size - 1} points (+ step-0 R0), best of {args.repeats}")
    print(f"{'case':<40} {'seconds':>9} {'vs baseline':>12}")
    for name, t in times.items():
        print(f"{name:<40} {t:9.4f} {t / base:11.3f}x")
    print(f"speedup of the direct fit over the paper's grid: {base / times['direct, Laplace intervals']:.0f}x")


if __name__ == "__main__":
    main()

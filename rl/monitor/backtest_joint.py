"""Backtest seeds of one recipe fitted together: at each cut, the runs' first
part of compute is fitted jointly (shared A and B, each run its own C_mid,
R0 and noise: rl/monitor/fit_joint.py) and each run's final evaluation is
forecast from that fit, at its own compute.

What a user with three seeds half done asks is where each will end; one run's
first half pins its top loosely (six or seven points, most on the steep
part), and the seeds' first halves together pin it better. Each run is cut at
the same fraction of its own compute, as in the single backtest
(rl/monitor/backtest.py), and judged the same way: error = forecast - final
evaluation, coverage by the band for one evaluation (the run's curve interval
from the two-level bootstrap, widened by the run's own evaluation scatter).
The fit uses the first run's `monitor.*` settings (seeds of one recipe share
them). A cut is fitted only where every run has `monitor.min_points`
evaluations after burn-in, the single backtest's rule. The joint fit's
warnings are each run's own, already given by its single backtest.
"""
from __future__ import annotations

import dataclasses

from core.errors import UserError
from rl.monitor.backtest import Cut, RunBacktest, monitor_settings

# the joint fit has no Laplace approximation: where bootstrap 0 asks for one, its intervals take
# this many refits (about 0.15 s for three runs)
JOINT_LAPLACE_REFITS = 100


@dataclasses.dataclass
class JointBacktest:
    """One group of seeds: each run's backtest with cuts from the joint fits."""

    runs: list[RunBacktest]
    A: dict[float, float]  # fraction -> the shared A fitted at that cut
    B: dict[float, float]

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.runs]

    def to_dict(self) -> dict:
        return {"runs": [r.to_dict() for r in self.runs], "A": {f"{f:g}": v for f, v in self.A.items()},
                "B": {f"{f:g}": v for f, v in self.B.items()}}


def backtest_group(results: list[RunBacktest], levels, *, bootstrap: int | None = None) -> JointBacktest:
    """Refit `results`' runs (seeds of one recipe) jointly at each of their cuts."""
    settings = monitor_settings(results[0].run_dir)
    if bootstrap is not None:
        settings["bootstrap"] = int(bootstrap)
    settings["bootstrap"] = settings["bootstrap"] or JOINT_LAPLACE_REFITS
    fractions = [c.fraction for c in results[0].cuts]
    cuts: list[list[Cut]] = [[] for _ in results]
    A, B = {}, {}
    for i, f in enumerate(fractions):
        singles = [r.cuts[i] for r in results]
        fresh = [Cut(fraction=f, x_cut=c.x_cut, n_evals=c.n_evals) for c in singles]
        short = next((f"{r.label} is too short at this cut" for r, c in zip(results, singles) if c.short), None)
        if short is None:
            try:
                joint = _fit(results, f, settings, max(levels))
            except UserError as err:
                short = str(err)
        if short is not None:
            for c, single in zip(fresh, singles):
                c.short = single.short or short
        else:
            A[f], B[f] = joint.A, joint.B
            bands = {lvl: joint.run_bands(lvl) for lvl in levels}
            for s, (r, c) in enumerate(zip(results, fresh)):
                c.fit, c.n_points, c.forecast = joint, joint.n_points[s], joint.run_predicted[s]
                c.error = c.forecast - r.y_final
                if r.fitted_end is not None:
                    c.error_vs_fitted_end = c.forecast - r.fitted_end
                c.intervals = {lvl: tuple(float(v) for v in bands[lvl][1][s]) for lvl in sorted(levels)}
                c.curve_intervals = {lvl: tuple(float(v) for v in bands[lvl][0][s]) for lvl in sorted(levels)}
        for s, c in enumerate(fresh):
            cuts[s].append(c)
    runs = [dataclasses.replace(r, cuts=c) for r, c in zip(results, cuts)]
    return JointBacktest(runs=runs, A=A, B=B)


def _fit(results, fraction, settings, level):
    from rl.monitor.fit_joint import RunPoints, fit_joint

    runs = []
    for r in results:
        kept = r.points.subset(r.points.x <= fraction * r.x_final)
        runs.append(RunPoints(kept.x, kept.y, kept.counts, r.label))
    return fit_joint(runs, burn_in=settings["burn_in_fraction"], bootstrap=int(settings["bootstrap"]),
                     interval=level, budgets=[r.x_final for r in results], prior_B=bool(settings.get("prior_B")),
                     resample=settings.get("resample") or "samples")


def backtest_groups(results: list[RunBacktest], levels, *, bootstrap: int | None = None) -> list[JointBacktest]:
    """A joint backtest for each group of seeds of one recipe among `results` (on one x axis)."""
    from rl.monitor.recipes import seed_groups

    out = []
    for idx in seed_groups([r.run_dir for r in results]):
        group = [results[i] for i in idx]
        if len({r.x_name for r in group}) == 1:
            out.append(backtest_group(group, levels, bootstrap=bootstrap))
    return out

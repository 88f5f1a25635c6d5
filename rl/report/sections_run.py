"""Report sections about how the run went, step by step: rewards, lengths and
truncation, the training signal, mismatch and staleness, time and throughput,
the compute ledger, hub and fault counters, the resolved config.

Each section draws only the metrics the run logged; a metric a run never
logged is left out of its panel, and a section with none says so, because
older runs (and other issues' counters) come and go.
"""
from __future__ import annotations

import numpy as np

from rl.report import svg
from rl.report.html import Cell, esc, note, num, section, table

# counters the reward hub reports (another issue adds them); shown as "not recorded" until it does
HUB_COUNTERS = ("reward/errors", "reward/timeouts", "reward/masked")
LEDGER = ("compute/device_hours", "compute/device_seconds", "compute/flops", "compute/gen_flops",
          "compute/train_flops", "compute/tokens", "compute/gen_tokens", "compute/train_tokens")


def _smooth(v: np.ndarray) -> np.ndarray:
    """Trailing moving average over ~1/25 of the run (the raw line stays underneath)."""
    w = max(1, v.size // 25)
    if w == 1:
        return v
    return np.convolve(np.concatenate([np.full(w - 1, v[0]), v]), np.ones(w) / w, mode="valid")


def steps_panels(runs, panels: list[tuple[str, list[str], bool]]) -> str | None:
    """Metrics over training steps, one SVG panel per (title, keys, log y).
    One run: a colour per metric; several: a colour per run, a dash per
    metric. None when no run logged any of the keys."""
    charts = []
    for title, keys, logy in panels:
        lines = []
        for ri, run in enumerate(runs):
            for ki, key in enumerate(keys):
                s, v = run.series(key)
                if not s.size:
                    continue
                one = len(runs) == 1
                smooth = v.size > 25 and not logy
                lines.append(svg.Line(key if one else f"{run.label}: {key}", s, _smooth(v) if smooth else v,
                                      svg.PALETTE[(ki if one else ri) % len(svg.PALETTE)],
                                      "" if one else svg.DASHES[ki % len(svg.DASHES)], v if smooth else None))
        if lines:
            charts.append(svg.chart(title, lines, logy=logy))
    return '<div class="figs">' + "".join(charts) + "</div>" if charts else None


def _plot_section(sid, title, why, runs, panels) -> str:
    body = steps_panels(runs, panels)
    return section(sid, title, why, body or note("Not recorded by these runs."))


def summary_section(runs, fits) -> str:
    rows = []
    for run, rf in zip(runs, fits):
        p = run.points
        rows.append([run.label, str(run.run_dir), run.status, run.setting("algo", "loss", "-"),
                     "-" if p is None else p.x_name, "-" if p is None else len(p.y),
                     "-" if p is None else f"{p.y[0]:.3f}", "-" if p is None else f"{p.y[-1]:.3f}",
                     "-" if rf.fit is None else f"{rf.fit.A:.3f}"])
    return section("summary", "Runs", "What this page covers; every number below is read from these directories.",
                   table(["run", "directory", "status", "loss", "x axis", "evals", "first eval", "latest eval",
                          "fitted A"], rows, left=5))


def rewards_section(runs) -> str:
    return _plot_section("rewards", "Reward", "Mean reward of the training rollouts per step (thin: raw; thick: "
                         "moving average) and the share of prompt groups kept after zero-variance filtering.",
                         runs, [("reward", ["rollout/reward_mean", "rollout/pass_rate"], False),
                                ("groups kept", ["rollout/groups_kept"], False)])


def lengths_section(runs) -> str:
    return _plot_section("lengths", "Lengths and truncation",
                         "Response lengths in tokens and the share of responses cut at rollout.max_new_tokens "
                         "(ScaleRL saw 10-15% truncation precede instability) or interrupted.",
                         runs, [("response length", ["rollout/length_mean", "rollout/length_max"], False),
                                ("truncated / interrupted", ["rollout/truncation_rate", "rollout/interrupted_rate",
                                                             "eval/truncation_rate"], False)])


def training_section(runs) -> str:
    return _plot_section("training", "Training signal", "The learner's loss, clipping, gradient norm and "
                         "importance ratio per step.", runs,
                         [("loss", ["train/loss"], False), ("clip fraction", ["train/clip_frac"], False),
                          ("grad norm", ["train/grad_norm"], False), ("ratio mean", ["train/ratio_mean"], False)])


def mismatch_section(runs) -> str:
    mismatch = sorted({k for r in runs for k in r.keys("mismatch/") if "kl" not in k})
    kl = sorted({k for r in runs for k in r.keys("mismatch/") if "kl" in k})
    return _plot_section("mismatch", "Mismatch and staleness",
                         "Engine-vs-learner log-prob mismatch (log scale; the probe is a fixed batch re-scored "
                         "after every weight sync) and how many policy versions old the trained samples were.",
                         runs, [("|log p engine - log p learner|", mismatch, True), ("KL(gen, train)", kl, False),
                                ("staleness (versions)", ["pipeline/staleness_max", "pipeline/staleness_mean"],
                                 False)])


THROUGHPUT = (("throughput/gen_tokens_per_s", "rollout/gen_tokens"),
              ("throughput/train_tokens_per_s", "train/tokens_trained"),
              ("throughput/samples_per_s", "rollout/samples"))


def _derive_throughput(run) -> None:
    """Tokens and samples per second of wall time, per step (run.derived)."""
    s, step_t = run.series("time/step")
    seconds = dict(zip(s, step_t))
    for name, key in THROUGHPUT:
        ks, kv = run.series(key)
        pairs = [(a, v / seconds[a]) for a, v in zip(ks, kv) if seconds.get(a, 0) > 0]
        run.derived[name] = (np.array([a for a, _ in pairs], dtype=float), np.array([v for _, v in pairs]))


def timing_section(runs) -> str:
    stages = list(dict.fromkeys(k for r in runs for k in r.keys("time/")))
    rows = []
    for run in runs:
        _derive_throughput(run)
        for k in [*stages, *(name for name, _ in THROUGHPUT)]:
            _, v = run.series(k)
            if v.size:
                spec = ".3f" if k.startswith("time/") else ".1f"
                total = f"{v.sum():.1f}" if k.startswith("time/") else "-"
                rows.append([run.label, k, format(float(np.median(v)), spec), format(float(v.mean()), spec),
                             format(float(v.max()), spec), total, v.size])
    panels = steps_panels(runs, [("seconds per step, by stage", [k for k in stages if k != "time/eval"], False),
                              ("tokens per second", ["throughput/gen_tokens_per_s",
                                                     "throughput/train_tokens_per_s"], False),
                              ("samples per second", ["throughput/samples_per_s"], False)])
    head = ["run", "stage (s) / throughput (per s)", "median", "mean", "max", "total", "steps"]
    body = ((table(head, rows, left=2) + (panels or ""))
            if rows else note("Not recorded by these runs."))
    return section("timing", "Time per stage and throughput",
                   "Wall-clock seconds per step by stage (stages overlap in the pipeline: generation runs "
                   "beside training, so they need not add up to time/step) and tokens per second of wall time.",
                   body)


def ledger_section(runs) -> str:
    rows = []
    for run in runs:
        axis = run.points.x_name if run.points is not None else None
        for k in LEDGER:
            v = run.last(k)
            if v is not None:
                rows.append([run.label, Cell(f"<b>{esc(k)}</b> (fit axis)") if k == axis else k, num(v, ".5g")])
    for run in runs:  # device time per step, from the running total
        s, v = run.series("compute/device_seconds")
        run.derived["compute/device_seconds_per_step"] = (s[1:], np.diff(v)) if v.size > 1 else (s[:0], v[:0])
    panels = steps_panels(runs, [("device-hours", ["compute/device_hours"], False),
                              ("tokens", ["compute/tokens", "compute/gen_tokens", "compute/train_tokens"], False),
                              ("device-seconds per step", ["compute/device_seconds_per_step"], False)])
    body = ((table(["run", "ledger total", "value"], rows, left=2) + (panels or ""))
            if rows else note("Not recorded by these runs."))
    return section("ledger", "Compute ledger",
                   "Cumulative compute as the ledger counted it (device-hours are GPU-hours on GPU, CPU "
                   "core-hours actually used on CPU; FLOPs are analytic; tokens generated + trained).", body)


def hub_section(runs) -> str:
    rows = []
    for run in runs:
        keys = list(dict.fromkeys([*HUB_COUNTERS, *run.keys("reward/"), *run.keys("fault/")]))
        for k in keys:
            _, v = run.series(k)
            if not v.size:
                rows.append([run.label, k, Cell("not recorded", "na"), "-", "-"])
                continue
            nonzero = int(np.sum(v != 0))
            last = Cell(num(v[-1], ".6g"), "miss" if v[-1] != 0 else "")
            rows.append([run.label, k, last, num(v.max(), ".6g"), nonzero])
    return section("hub", "Reward hub and faults",
                   "Counters of the reward hub (errors, timeouts, masked rewards) and of recovered faults "
                   "(fault/* are running totals: the last value is the count). \u201cnot recorded\u201d: the "
                   "run did not log that counter.",
                   table(["run", "counter", "last", "max", "steps > 0"], rows, left=2))


def _flatten(d, prefix="") -> dict[str, object]:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_section(runs) -> str:
    body = ""
    if len(runs) > 1:
        flat = [_flatten(r.config) for r in runs]
        keys = sorted(set().union(*flat))
        differ = [k for k in keys if len({repr(f.get(k, "(absent)")) for f in flat}) > 1]
        rows = [[k, *(str(f.get(k, "(absent)")) for f in flat)] for k in differ]
        body += ("<h3>Keys that differ</h3>" + table(["key", *(r.label for r in runs)], rows, left=1 + len(runs))
                 if rows else note("The runs' configs are identical."))
    for i, run in enumerate(runs):
        text = run.config_text or "(no config.yaml)"
        body += (f"<details{' open' if i == 0 and len(runs) == 1 else ''}><summary>{esc(run.label)}: "
                 f"{esc(run.run_dir / 'config.yaml')}</summary><pre>{esc(text)}</pre></details>")
    return section("config", "Resolved config",
                   "The recipe as the run resolved it (layers and overrides applied): config.yaml.", body)

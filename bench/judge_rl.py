"""RL on the tiny task rewarded only by the GenRM judge, beside the same recipe
rewarded by the verifier: same seeds, steps and evaluation set.

Baseline: `recipes/tiny-arith.yaml` (reward = the math verifier). The other
side: `recipes/tiny-arith-genrm.yaml` (reward = the tiny judge's P(Yes); the
verifier checks every sample with weight 0, so both runs' held-out pass rate
is the verifier's). Both are run through `bench/recipe_zoo.py`'s `run` (a
finished run is only summarised), fitted by `asymptote compare`, and printed
as a table: final pass rate, A and B with intervals, the pass rate at equal
compute, the judge's compute (ledger columns) and, per window of steps, how
the judge scored the policy's samples against the verifier
(`reward/genrm/score_right`, `score_wrong`, `score_no_answer`,
`no_answer_rate`, `fooled_rate`: rl/step_metrics.py `judge_agreement`).
Plots: pass rate over steps of both runs and the judge's scores over steps.

    python bench/judge_rl.py [--seeds 0] [--root runs/judge] [--plot docs/img/judge_rl.png] [KEY=VALUE ...]

`asymptote base judge` must have built the tiny judge (else the genrm run
stops with one line saying so).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_zoo import ROOT, compare, final_pass_rate, run  # noqa: E402

from rl.metrics_log import read_rows  # noqa: E402

JUDGE_COLS = ("score_right", "score_wrong", "score_no_answer", "no_answer_rate", "fooled_rate")


def window_means(metrics: list[dict], key: str, width: int) -> list[tuple[int, float]]:
    """(first step, mean of `key`) over consecutive windows of `width` training steps."""
    pts = [(r["step"], r[key]) for r in metrics if key in r]  # training steps' rollout metrics
    out = []
    for start in range(1, max((s for s, _ in pts), default=0) + 1, width):
        vals = [v for s, v in pts if start <= s < start + width]
        if vals:
            out.append((start, sum(vals) / len(vals)))
    return out


def judge_table(metrics: list[dict], width: int) -> list[str]:
    cols = {c: dict(window_means(metrics, f"reward/genrm/{c}", width)) for c in JUDGE_COLS}
    starts = sorted(set().union(*(c.keys() for c in cols.values())))
    lines = [f"| steps | {' | '.join(JUDGE_COLS)} |", "|---" * (len(JUDGE_COLS) + 1) + "|"]
    for s in starts:
        cells = " | ".join(f"{cols[c][s]:.3f}" if s in cols[c] else "-" for c in JUDGE_COLS)
        lines.append(f"| {s}-{s + width - 1} | {cells} |")
    return lines


def judge_compute(metrics: list[dict]) -> dict:
    last = [r for r in metrics if "compute/judge_core_seconds" in r][-1]
    return {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith("compute/") and
            ("judge" in k or "genrm" in k or k in ("compute/device_seconds", "compute/gen_tokens"))}


def plot(runs: dict[str, list[dict]], out: Path) -> None:
    """`runs`: label -> the run's metrics.jsonl rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for label, metrics in runs.items():
        ev = [(r["step"], r["eval/pass_rate"]) for r in metrics if "eval/pass_rate" in r]
        a.plot(*zip(*ev), marker="o", ms=3, label=label)
    a.set_xlabel("step")
    a.set_ylabel("held-out pass rate (verifier, mean@4)")
    a.legend()
    judge = next((m for label, m in runs.items() if "genrm" in label), None)
    if judge is not None:
        for c in JUDGE_COLS:
            pts = window_means(judge, f"reward/genrm/{c}", 5)
            if pts:
                b.plot(*zip(*pts), label=c)
        b.set_xlabel("step (5-step means)")
        b.set_ylabel("judge P(Yes) / rate")
        b.set_title("the judge's scores against the verifier")
        b.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--root", type=Path, default=ROOT / "runs" / "judge")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "judge_rl.png")
    ap.add_argument("--window", type=int, default=25, help="steps per row of the judge table")
    args, overrides = ap.parse_known_args()
    recipes = ["tiny-arith", "tiny-arith-genrm"]
    runs = {(r, s): run(r, s, args.root, overrides) for r in recipes for s in args.seeds}
    metrics = {key: read_rows(d) for key, d in runs.items()}  # each run's metrics.jsonl, read once
    fits = compare(list(runs.values()), args.root / "compare.png")
    by_name = {f["source"]: f for f in fits["runs"]}
    print(f"\nEqual compute: {fits['equal_compute']:.4g} ({fits['x']}); intervals {fits['interval']:.0%}\n")
    print("| reward | seed | final pass rate | A | B | pass rate at equal compute |")
    print("|---|---|---|---|---|---|")
    for (r, s), d in runs.items():
        f = by_name[str(d / "metrics.jsonl")]
        print(f"| {r} | {s} | {final_pass_rate(d):.3f} | {f['A']:.3f} [{f['A_interval'][0]:.3f}, "
              f"{f['A_interval'][1]:.3f}] | {f['B']:.2f} [{f['B_interval'][0]:.2f}, {f['B_interval'][1]:.2f}] "
              f"| {f['at_equal_compute']:.3f} |")
    for s in args.seeds:
        judged = metrics[("tiny-arith-genrm", s)]
        print(f"\njudge compute, seed {s}: {json.dumps(judge_compute(judged))}")
        print(f"the judge's scores against the verifier, seed {s}:")
        print("\n".join(judge_table(judged, args.window)))
    plot({f"{r} s{s}": m for (r, s), m in metrics.items()}, args.plot)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()

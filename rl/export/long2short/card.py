"""The model card of a long2short export and the record of every method
tried on the same source.

Each export appends one line to the source's trials file (RUN_DIR/long2short.jsonl
for a run; OUT_DIR's parent folder/long2short.jsonl for a Hugging Face
folder or base, unless --trials names one) and then writes into OUT_DIR:
`long2short.json` (this export's record), `pareto.png` (held-out accuracy vs
mean response tokens of the source and of every trial so far, merge sweeps
included, with the Pareto front drawn through the points no other point
beats on both) and `README.md` (the card: before and after, the change, the
method and its settings, what was chosen and why, the trials table and the
plot). Plot failures leave a warning in the card, never a failed export.
"""
from __future__ import annotations

import json
from pathlib import Path

RECORD = "long2short.json"
TRIALS = "long2short.jsonl"
PLOT = "pareto.png"


def change(before: dict, after: dict) -> dict:
    return {"tokens_pct": round(100 * (after["mean_tokens"] - before["mean_tokens"]) / before["mean_tokens"], 1),
            "accuracy_points": round(100 * (after["accuracy"] - before["accuracy"]), 1)}


def append_trial(trials: Path, record: dict) -> list[dict]:
    """Append `record` to the trials file; all trials on file, oldest first."""
    trials.parent.mkdir(parents=True, exist_ok=True)
    with trials.open("a") as f:
        f.write(json.dumps(record) + "\n")
    out = []
    for line in trials.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(tokens, accuracy) points no other point beats on both (fewer or equal
    tokens and higher or equal accuracy, one strictly), by tokens."""
    front = [p for p in points
             if not any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in points)]
    return sorted(set(front))


def plot(trials: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    pts = []
    b = trials[-1]["before"]
    ax.scatter([b["mean_tokens"]], [b["accuracy"]], marker="s", color="black", zorder=3, label="before (long)")
    pts.append((b["mean_tokens"], b["accuracy"]))
    for i, t in enumerate(trials):
        colour = f"C{i % 10}"
        for s in t.get("sweep", []):
            ax.scatter([s["mean_tokens"]], [s["accuracy"]], color=colour, s=14, alpha=0.5)
            ax.annotate(f"α={s['alpha']:g}", (s["mean_tokens"], s["accuracy"]), fontsize=6, alpha=0.7)
            pts.append((s["mean_tokens"], s["accuracy"]))
        a = t["after"]
        ax.scatter([a["mean_tokens"]], [a["accuracy"]], color=colour, s=40, zorder=3, label=f"{t['method']} ({i + 1})")
        pts.append((a["mean_tokens"], a["accuracy"]))
    front = pareto_front(pts)
    ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="grey", lw=1, label="Pareto front")
    ax.set_xlabel("mean response tokens (held-out)")
    ax.set_ylabel(f"held-out accuracy (mean@{b['k']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _row(name: str, m: dict) -> str:
    return f"| {name} | {m['accuracy']:.3f} | {m['pass_at_k']:.3f} | {m['mean_tokens']:.1f} | {m['truncation_rate']:.3f} |"


def render(record: dict, trials: list[dict], trials_path: Path, plot_note: str) -> str:
    b, a, c = record["before"], record["after"], record["change"]
    lines = [
        f"# long2short export: {record['method']}",
        "",
        f"Source: {record['source']}. Held-out: the first {b['prompts']} arith validation prompts, "
        f"{b['k']} samples each at temperature {record['eval']['temperature']}, at most "
        f"{record['eval']['max_new_tokens']} tokens (a truncated answer is wrong).",
        "",
        "| model | accuracy (mean@k) | pass@k | mean response tokens | truncated |",
        "|---|---|---|---|---|",
        _row("before", b),
        _row("after", a),
        "",
        f"Change: {c['tokens_pct']:+.1f}% tokens, {c['accuracy_points']:+.1f} accuracy points.",
        "",
        f"Chosen: {record.get('chosen') or '-'}",
        "",
        "Settings:",
        "",
        "```json",
        json.dumps(record["settings"], indent=1),
        "```",
    ]
    if record.get("data"):
        lines += ["", "Training data: " + ", ".join(f"{k} {v}" for k, v in record["data"].items())]
    if record.get("sweep"):
        lines += ["", "| alpha | accuracy | mean tokens |", "|---|---|---|"]
        lines += [f"| {s['alpha']:g} | {s['accuracy']:.3f} | {s['mean_tokens']:.1f} |" for s in record["sweep"]]
    lines += ["", f"All methods tried on this source ({trials_path}):", "",
              "| # | method | accuracy before → after | tokens before → after | output |", "|---|---|---|---|---|"]
    for i, t in enumerate(trials):
        lines.append(f"| {i + 1} | {t['method']} | {t['before']['accuracy']:.3f} → {t['after']['accuracy']:.3f} | "
                     f"{t['before']['mean_tokens']:.1f} → {t['after']['mean_tokens']:.1f} | {t['out']} |")
    lines += ["", plot_note or f"![accuracy vs tokens]({PLOT})", ""]
    return "\n".join(lines)


def write(out: Path, record: dict, trials_path: Path) -> list[dict]:
    """Append the trial, write OUT_DIR's record, plot and card; all trials."""
    trials = append_trial(trials_path, record)
    (out / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    note = ""
    try:
        plot(trials, out / PLOT)
    except Exception as err:  # a card without its plot beats a failed export
        note = f"(the Pareto plot could not be drawn: {type(err).__name__}: {err})"
    (out / "README.md").write_text(render(record, trials, trials_path, note))
    return trials

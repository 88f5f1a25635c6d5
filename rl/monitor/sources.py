"""Read (compute, pass rate) points from a run directory, a CSV or a JSONL file.

A run directory holds metrics.jsonl: one JSON object per training step; only
evaluation steps carry `eval/pass_rate`, so rows without a y value are
skipped. Defaults: y = `eval/pass_rate`, x = the run's own fit axis
(`compute/<monitor.x_axis>` from its config.yaml), else `compute/device_hours`.

When the run also wrote RUN_DIR/evals.jsonl (one line per evaluation with
its per-prompt correct counts and the ledger totals at that moment), the
points come from there with their counts (`Points.counts`), so the fit can
weigh each point by its own sampling noise (rl/monitor/fit_noise.py). Runs
from before evals.jsonl, and plain files, give points without counts.

The step-0 evaluation sits at x = 0 whatever its row says: it comes before
any RL update, and older runs logged the evaluation's own generated tokens
(and their FLOPs) with it, which on the tokens and flops axes moved R0's
point off zero and left R0 unrecognised.

Any other CSV/JSONL (a wandb export, a paper's digitised curve) names its
columns with --x/--y; when the defaults are absent and the file has exactly
two numeric columns, they are taken as x then y in file order.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from core.errors import UserError
from rl.monitor.fit_noise import EvalCounts

DEFAULT_Y = "eval/pass_rate"
DEFAULT_X = "compute/device_hours"


@dataclasses.dataclass
class Points:
    """Points of one curve plus where they came from."""

    x: np.ndarray
    y: np.ndarray
    x_name: str
    y_name: str
    source: Path  # metrics.jsonl for a run directory (evals.jsonl may have supplied the points)
    run_dir: Path | None  # set when the source is a run directory
    counts: EvalCounts | None = None  # per-prompt results, one row per point (from evals.jsonl)
    steps: np.ndarray | None = None  # training step of each point (run directories)

    def subset(self, keep) -> "Points":
        """The points where `keep` is True (counts and steps alongside)."""
        keep = np.asarray(keep, dtype=bool)
        return dataclasses.replace(
            self, x=self.x[keep], y=self.y[keep],
            counts=None if self.counts is None else self.counts.subset(keep),
            steps=None if self.steps is None else self.steps[keep])


def _read_rows(path: Path) -> list[dict]:
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    if not text.strip():
        raise UserError(f"{path}: the file is empty")
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{i}: not a JSON object (expected one per line)") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{i}: not a JSON object (expected one per line)")
        rows.append(row)
    return rows


def _number(v) -> float | None:
    """A float, None for missing/blank, NaN for text that is not a number."""
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, bool):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _columns(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys(r))
    return list(seen)


def _parses(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _numeric_columns(rows: list[dict]) -> list[str]:
    """Columns whose present values all parse as numbers ("nan" counts: it is caught later, by row)."""
    out = []
    for c in _columns(rows):
        vals = [r.get(c) for r in rows if _number(r.get(c)) is not None]
        if vals and all(_parses(v) for v in vals):
            out.append(c)
    return out


def _run_x_axis(run_dir: Path) -> str | None:
    """The compute column a run's own live fit uses (its recipe's monitor.x_axis)."""
    import yaml

    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        axis = (cfg.get("monitor") or {}).get("x_axis")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return f"compute/{axis}" if isinstance(axis, str) else None


def load_points(source: str | Path, x: str | None = None, y: str | None = None) -> Points:
    """Points (x increasing) from SOURCE; raises UserError naming what is wrong."""
    src = Path(source)
    run_dir = None
    if src.is_dir():
        run_dir, src = src, src / "metrics.jsonl"
        if not src.exists() and not (run_dir / "evals.jsonl").exists():
            raise UserError(f"{run_dir}: not a run directory (no metrics.jsonl or evals.jsonl)")
        x = x or _run_x_axis(run_dir)
        from_evals = _from_evals(run_dir, src, x or DEFAULT_X, y)
        if from_evals is not None:
            return from_evals
        if not src.exists():
            raise UserError(f"{run_dir}: not a run directory (no metrics.jsonl)")
    elif not src.exists():
        raise UserError(f"{src}: no such file or directory")
    rows = _read_rows(src)
    if not rows:
        raise UserError(f"{src}: no rows")
    x, y = _pick_columns(src, rows, x, y)
    xs, ys, steps = [], [], []
    for i, row in enumerate(rows, 1):
        yv = _number(row.get(y))
        if yv is None:
            continue  # not an evaluation row
        xv = _number(row.get(x))
        if xv is None or not math.isfinite(xv) or not math.isfinite(yv):
            raise UserError(f"{src}: row {i}: {x}={row.get(x)!r}, {y}={row.get(y)!r} is not a pair of numbers")
        if run_dir is not None and row.get("step") == 0:
            xv = 0.0  # the step-0 evaluation: no RL compute yet (see the module docstring)
        xs.append(xv)
        ys.append(yv)
        steps.append(row.get("step"))
    if not xs:
        raise UserError(f"{src}: no rows with a value in {y!r}")
    xa, ya = np.array(xs), np.array(ys)
    _check_increasing(src, x, xa)
    st = np.array(steps, dtype=float) if run_dir is not None and all(isinstance(v, int) for v in steps) else None
    return Points(xa, ya, x, y, src, run_dir, steps=st)


def _pick_columns(src: Path, rows: list[dict], x: str | None, y: str | None) -> tuple[str, str]:
    cols = _columns(rows)
    if x is None or y is None:
        if (y or DEFAULT_Y) in cols and (x or DEFAULT_X) in cols:
            x, y = x or DEFAULT_X, y or DEFAULT_Y
        else:
            numeric = _numeric_columns(rows)
            if x is None and y is None and len(numeric) == 2:
                x, y = numeric
            else:
                missing = DEFAULT_X if x is None else DEFAULT_Y
                raise UserError(
                    f"{src}: no column {missing!r}; pass --x and --y (columns: {', '.join(cols[:12])})"
                )
    for name, flag in ((x, "--x"), (y, "--y")):
        if name not in cols:
            raise UserError(f"{src}: no column {name!r} ({flag}); columns: {', '.join(cols[:12])}")
    return x, y


def _check_increasing(src: Path, x: str, xa: np.ndarray) -> None:
    bad = np.flatnonzero(np.diff(xa) <= 0)
    if bad.size:
        i = int(bad[0])
        raise UserError(
            f"{src}: {x} must increase from row to row; {xa[i + 1]:g} follows {xa[i]:g} (evaluation {i + 2})"
        )


def _from_evals(run_dir: Path, metrics: Path, x: str, y: str | None) -> Points | None:
    """Points with per-prompt counts from RUN_DIR/evals.jsonl; None when the run has none
    (or the caller asked for another y than the pass rate)."""
    path = run_dir / "evals.jsonl"
    if not path.exists() or (y is not None and y != DEFAULT_Y):
        return None
    rows = [r for r in _read_rows(path) if "pass_rate" in r]
    if not rows:
        return None
    if metrics.exists():  # an older run resumed after evals.jsonl appeared lacks its first evaluations
        logged = {r.get("step") for r in _read_rows(metrics) if _number(r.get(DEFAULT_Y)) is not None}
        if not logged <= {r.get("step") for r in rows}:
            return None
    if not any(x in r for r in rows):
        cols = [c for c in _columns(rows) if c.startswith("compute/") or c == "step"]
        raise UserError(f"{path}: no column {x!r} (--x); columns: {', '.join(cols)}")
    xs, ys, steps, correct, ks = [], [], [], [], []
    for i, row in enumerate(rows, 1):
        xv, yv = _number(row.get(x)), _number(row.get("pass_rate"))
        if xv is None or yv is None or not math.isfinite(xv) or not math.isfinite(yv):
            raise UserError(f"{path}: row {i}: {x}={row.get(x)!r}, pass_rate={row.get('pass_rate')!r} "
                            "is not a pair of numbers")
        xs.append(0.0 if row.get("step") == 0 else xv)
        ys.append(yv)
        steps.append(row.get("step"))
        correct.append(row.get("correct"))
        ks.append(row.get("k"))
    xa = np.array(xs)
    _check_increasing(path, x, xa)
    counts = None
    if all(isinstance(c, list) and c for c in correct) and all(isinstance(k, (int, float)) for k in ks):
        counts = EvalCounts(correct, ks)
    st = np.array(steps, dtype=float) if all(isinstance(v, int) for v in steps) else None
    return Points(xa, np.array(ys), x, DEFAULT_Y, metrics, run_dir, counts=counts, steps=st)

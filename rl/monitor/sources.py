"""Read (compute, pass rate) points from a run directory, a CSV or a JSONL file.

A run directory holds metrics.jsonl: one JSON object per training step; only
evaluation steps carry `eval/pass_rate`, so rows without a y value are
skipped. Defaults: y = `eval/pass_rate`, x = the run's own fit axis
(`compute/<monitor.x_axis>` from its config.yaml), else `compute/device_hours`.

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

from rl.errors import UserError

DEFAULT_Y = "eval/pass_rate"
DEFAULT_X = "compute/device_hours"


@dataclasses.dataclass
class Points:
    """Points of one curve plus where they came from."""

    x: np.ndarray
    y: np.ndarray
    x_name: str
    y_name: str
    source: Path
    run_dir: Path | None  # set when the source is a run directory


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
        if not src.exists():
            raise UserError(f"{run_dir}: not a run directory (no metrics.jsonl)")
        x = x or _run_x_axis(run_dir)
    elif not src.exists():
        raise UserError(f"{src}: no such file or directory")
    rows = _read_rows(src)
    if not rows:
        raise UserError(f"{src}: no rows")
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
    xs, ys = [], []
    for i, row in enumerate(rows, 1):
        yv = _number(row.get(y))
        if yv is None:
            continue  # not an evaluation row
        xv = _number(row.get(x))
        if xv is None or not math.isfinite(xv) or not math.isfinite(yv):
            raise UserError(f"{src}: row {i}: {x}={row.get(x)!r}, {y}={row.get(y)!r} is not a pair of numbers")
        xs.append(xv)
        ys.append(yv)
    if not xs:
        raise UserError(f"{src}: no rows with a value in {y!r}")
    xa, ya = np.array(xs), np.array(ys)
    bad = np.flatnonzero(np.diff(xa) <= 0)
    if bad.size:
        i = int(bad[0])
        raise UserError(
            f"{src}: {x} must increase from row to row; {xa[i + 1]:g} follows {xa[i]:g} (evaluation {i + 2})"
        )
    return Points(xa, ya, x, y, src, run_dir)

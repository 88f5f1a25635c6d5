"""What the report reads from a run directory, read once per page.

Only files the controller writes: metrics.jsonl (one row per step; step 0 is
the evaluation before any update), config.yaml (the resolved recipe),
summary.json (present once the run finished). The evaluation points come
from rl/monitor/sources.py, so the report's x axis is the one the run's live
fit used. A report is also written while a run is going on, so a missing
summary, a torn last line or too few evaluations are states to show, not
errors; only a folder without metrics.jsonl is refused.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from core.errors import UserError


@dataclasses.dataclass
class RunData:
    run_dir: Path
    label: str
    rows: list[dict]  # metrics.jsonl, one per step, by step
    config: dict  # config.yaml as parsed ({} when missing)
    config_text: str
    summary: dict | None  # summary.json, None while the run is going on
    points: object = None  # rl.monitor.sources.Points (the evaluations), None when unreadable
    points_error: str | None = None
    # series computed from logged ones (throughput, per-step deltas): name -> (steps, values)
    derived: dict = dataclasses.field(default_factory=dict)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a numeric metric, only the steps that logged it."""
        if key in self.derived:
            return self.derived[key]
        steps, vals = [], []
        for r in self.rows:
            v = r.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            steps.append(r.get("step", len(steps)))
            vals.append(float(v))
        return np.asarray(steps, dtype=float), np.asarray(vals, dtype=float)

    def keys(self, prefix: str) -> list[str]:
        """Numeric metric names under `prefix` (e.g. "time/"), in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.rows:
            for k, v in r.items():
                if k.startswith(prefix) and isinstance(v, (int, float)) and not isinstance(v, bool):
                    seen[k] = None
        return list(seen)

    def last(self, key: str):
        """The newest logged value of a metric (None when never logged)."""
        for r in reversed(self.rows):
            if key in r:
                return r[key]
        return None

    def setting(self, section: str, key: str, default=None):
        return (self.config.get(section) or {}).get(key, default)

    @property
    def steps_done(self) -> int:
        return max((int(r["step"]) for r in self.rows if isinstance(r.get("step"), int)), default=0)

    @property
    def finished(self) -> bool:
        """Done training: summary.json is there, or the last planned step is logged.
        The controller rebuilds report.html after the final evaluation, a moment
        before it writes summary.json, so the page of a finished run is made
        without it; a run given more steps has its new total in config.yaml."""
        planned = self.setting("run", "steps")
        return self.summary is not None or (isinstance(planned, int) and 0 < planned <= self.steps_done)

    @property
    def status(self) -> str:
        planned = self.setting("run", "steps")
        if self.finished:
            return f"finished ({self.steps_done} steps)"
        return f"running: step {self.steps_done}" + (f" of {planned}" if planned else "")


def _rows(path: Path) -> list[dict]:
    by_step: dict = {}
    extra = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill or still being written
        if not isinstance(row, dict):
            continue
        if isinstance(row.get("step"), int):
            by_step[row["step"]] = row  # a re-run step: the newest copy
        else:
            extra.append(row)
    return [by_step[s] for s in sorted(by_step)] + extra


def load_run(run_dir: str | Path, label: str) -> RunData:
    """Read one run directory; UserError for a folder that is not a run."""
    import yaml

    from rl.monitor.sources import load_points

    d = Path(run_dir)
    if not d.is_dir():
        raise UserError(f"{d}: no such run directory")
    if not (d / "metrics.jsonl").is_file():
        raise UserError(f"{d}: not a run directory (no metrics.jsonl)")
    try:
        text = (d / "config.yaml").read_text()
        config = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError):
        text, config = "", {}
    try:
        summary = json.loads((d / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        summary = None
    run = RunData(d, label, _rows(d / "metrics.jsonl"), config if isinstance(config, dict) else {}, text, summary)
    try:
        run.points = load_points(d)
    except UserError as err:
        run.points_error = str(err)
    return run

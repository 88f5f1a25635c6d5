"""Where per-step metrics go: one JSON line per step in RUN_DIR/metrics.jsonl,
mirrored to wandb (offline unless a key is set). A logger never crashes a run:
a failed wandb call becomes a warning and wandb is switched off.

Each evaluation's per-prompt results go to RUN_DIR/evals.jsonl (`append`).
Across a resume: `roll_back(run_dir, step)` drops the rows logged after the
checkpoint the run continues from (they are logged again as the steps are
re-run), so metrics.jsonl holds each step once; wandb continues the same run
(its id is kept in RUN_DIR/wandb_run_id). wandb itself keeps the first copy
of a re-run step's values: it ignores steps it has already seen.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_rows(run_dir: Path, name: str = "metrics.jsonl") -> list[dict]:
    """RUN_DIR/<name> as written, one dict per line ([] when the file is
    absent); a line cut short by a kill is left out. For readers that want
    errors named to the user, see rl.monitor.sources."""
    path = Path(run_dir) / name
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if isinstance(row, dict):
            out.append(row)
    return out


class MetricsLog:
    def __init__(self, run_dir: Path, *, mode: str, project: str, name: str, config: dict[str, Any]):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")
        self._wandb = None
        if mode == "auto":
            mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
        if mode != "disabled":
            try:
                import wandb
                self._wandb = wandb.init(project=project, name=name, config=config, mode=mode,
                                         dir=str(run_dir), reinit="finish_previous",
                                         id=_run_id(Path(run_dir)), resume="allow")
            except Exception as err:  # never let logging stop training
                log.warning("wandb disabled: %s", err)

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: _jsonable(v) for k, v in record.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()
        if self._wandb is not None:
            try:
                numeric = {k: v for k, v in clean.items() if isinstance(v, (int, float)) and v is not None}
                self._wandb.log(numeric, step=int(record.get("step", 0)))
            except Exception as err:
                log.warning("wandb logging failed, switching it off: %s", err)
                self._wandb = None

    @staticmethod
    def event(run_dir: Path, kind: str, **fields: Any) -> None:
        """Append one line to RUN_DIR/events.jsonl, the run's history of
        resumes and restarts (never rolled back)."""
        with (Path(run_dir) / "events.jsonl").open("a") as f:
            f.write(json.dumps({"event": kind, "time": time.time(), **fields}) + "\n")

    @staticmethod
    def count_events(run_dir: Path, kind: str) -> int:
        path = Path(run_dir) / "events.jsonl"
        if not path.is_file():
            return 0
        return sum(1 for line in path.read_text().splitlines() if f'"event": "{kind}"' in line)

    @staticmethod
    def append(run_dir: Path, name: str, record: dict[str, Any]) -> None:
        """One JSON line to RUN_DIR/<name> (e.g. evals.jsonl, the per-prompt
        results of each evaluation), flushed at once."""
        with (Path(run_dir) / name).open("a") as f:
            f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")

    @staticmethod
    def roll_back(run_dir: Path, step: int | None, name: str = "metrics.jsonl") -> int:
        """Keep only the rows of steps <= `step` (None: none) in RUN_DIR/<name>;
        returns how many rows are kept. The file is replaced atomically."""
        path = Path(run_dir) / name
        if not path.is_file():
            return 0
        kept = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if step is not None and isinstance(row, dict) and row.get("step", 0) <= step:
                kept.append(line)
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
        return len(kept)

    def close(self) -> None:
        self._file.close()
        if self._wandb is not None:
            try:
                self._wandb.finish()
            except Exception as err:
                log.warning("wandb finish failed: %s", err)


def _run_id(run_dir: Path) -> str:
    """The wandb run id of this run directory, made on first use."""
    path = run_dir / "wandb_run_id"
    if path.is_file():
        return path.read_text().strip()
    import uuid
    run_id = uuid.uuid4().hex[:12]
    path.write_text(run_id)
    return run_id


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v

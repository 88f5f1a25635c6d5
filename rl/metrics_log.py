"""Where per-step metrics go: one JSON line per step in RUN_DIR/metrics.jsonl,
mirrored to wandb (offline unless a key is set). A logger never crashes a run:
a failed wandb call becomes a warning and wandb is switched off."""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
                                         dir=str(run_dir), reinit="finish_previous")
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

    def close(self) -> None:
        self._file.close()
        if self._wandb is not None:
            try:
                self._wandb.finish()
            except Exception as err:
                log.warning("wandb finish failed: %s", err)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v

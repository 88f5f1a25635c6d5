"""Refit the scaling curve in the background after every evaluation.

The controller calls `submit(points)` after each eval and merges `latest()`
into the metrics it logs (metrics.jsonl and wandb) at its next step. The fit
runs in one daemon thread; requests that arrive while it works are coalesced
(only the newest is kept, older ones are stale anyway). Nothing here raises
into training: a failed fit is a logged warning and `fit/error = 1`.

Each successful fit writes RUN_DIR/fit.json (the FitResult plus the step and
axis) and RUN_DIR/plots/curve.png, both replaced atomically.

The per-prompt results of the submitted evaluations are read back from
RUN_DIR/evals.jsonl (the controller appends a line before it submits), so
the live fit weighs points by their sampling noise exactly as `asymptote
extrapolate` does on the finished run; without them (an older run resumed)
it falls back to plain points.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from rl.monitor.config import MonitorConfig

log = logging.getLogger(__name__)


def fit_metrics(fit) -> dict[str, float]:
    """Flat `fit/*` metrics of a FitResult (what the controller logs)."""
    return {
        "fit/A": fit.A, "fit/A_lo": fit.A_interval[0], "fit/A_hi": fit.A_interval[1],
        "fit/B": fit.B, "fit/B_lo": fit.B_interval[0], "fit/B_hi": fit.B_interval[1],
        "fit/C_mid": fit.C_mid, "fit/R0": fit.R0, "fit/budget": fit.budget,
        "fit/predicted": fit.predicted, "fit/predicted_lo": fit.predicted_interval[0],
        "fit/predicted_hi": fit.predicted_interval[1],
        "fit/r2": fit.r2, "fit/rmse": fit.rmse, "fit/n_points": float(fit.n_points),
        "fit/warnings": float(len(fit.warnings)), "fit/dispersion": fit.dispersion,
    }


class LiveFitter:
    """Background refits of R(C) for one run directory."""

    def __init__(self, run_dir: str | Path, cfg: MonitorConfig):
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self._lock = threading.Lock()
        self._pending: list[dict] | None = None
        self._thread: threading.Thread | None = None
        self._latest: dict[str, float] = {}
        self.last_error: str | None = None
        self.n_fits = 0
        # CPU seconds the fits themselves used (this process's thread): on CPU the ledger counts the
        # driver's process time as training compute, so a caller can take this back out of it.
        self.cpu_seconds = 0.0

    # ------------------------------------------------------------ controller side

    def submit(self, points: list[dict]) -> None:
        """Ask for a refit on these evaluation points ({"step", "x", "y"}); returns at once."""
        if not self.cfg.enabled:
            return
        with self._lock:
            self._pending = [dict(p) for p in points]
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="asymptote-fit", daemon=True)
                self._thread.start()

    def latest(self) -> dict[str, float]:
        """The newest fit as flat metrics ({} before the first fit)."""
        with self._lock:
            return dict(self._latest)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no fit is running or queued; True if idle."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return t is None or not t.is_alive()

    def close(self, timeout: float = 60.0) -> None:
        """Let the running fit and the queued one (the newest points: the run's
        final fit, which the summary reports) finish, for up to `timeout`
        seconds."""
        self.wait(timeout)

    # ------------------------------------------------------------ worker side

    def _work(self) -> None:
        while True:
            with self._lock:
                points, self._pending = self._pending, None
                if points is None:
                    return
            t0 = time.thread_time()
            try:
                self._fit(points)
            except Exception as err:  # noqa: BLE001 - a monitor never crashes the run
                msg = f"{type(err).__name__}: {err}"
                log.warning("scaling fit failed: %s", msg)
                with self._lock:
                    self.last_error = msg
                    self._latest = {**self._latest, "fit/error": 1.0}
            finally:
                self.cpu_seconds += time.thread_time() - t0

    def _fit(self, points: list[dict]) -> None:
        from rl.monitor.fit import fit_sigmoid, split_burn_in
        from rl.monitor.fit_diagnose import diagnose_startup
        from rl.monitor.plots import plot_curve

        points = sorted(points, key=lambda p: (p.get("step", 0), p["x"]))
        x = np.array([float(p["x"]) for p in points])
        y = np.array([float(p["y"]) for p in points])
        positive = x[x > 0]
        # without a step-0 point at x = 0, R0 is one more parameter to fit
        need = self.cfg.min_points + (0 if (x == 0).any() else 1)
        if positive.size == 0 or positive.size - split_burn_in(positive, self.cfg.burn_in_fraction) < need:
            return  # not enough evaluations yet: nothing to say, nothing wrong
        budget = self.cfg.target_budget or 4.0 * float(x.max())
        fit = fit_sigmoid(x, y, method=self.cfg.method, burn_in=self.cfg.burn_in_fraction,
                          bootstrap=self.cfg.bootstrap, interval=self.cfg.interval, budget=budget, seed=0,
                          counts=self._counts(points), resample=self.cfg.resample,
                          prior_B=True if self.cfg.prior_B else None)
        startup = diagnose_startup(x, [p.get("step") for p in points])
        if startup:
            fit.warnings.append(startup)
        step = points[-1].get("step")
        record = {"step": step, "x_axis": self.cfg.x_axis, **fit.to_dict()}
        _write_json(self.run_dir / "fit.json", record)
        plot_curve(fit, self.run_dir / "plots" / "curve.png", x_label=_axis_label(self.cfg.x_axis),
                   y_label="eval pass rate", title=None)
        metrics = {**fit_metrics(fit), "fit/error": 0.0}
        if step is not None:
            metrics["fit/step"] = float(step)
        with self._lock:
            self._latest = metrics
            self.last_error = None
            self.n_fits += 1


    def _counts(self, points: list[dict]):
        """Per-prompt results of these evaluations from RUN_DIR/evals.jsonl, or None."""
        from rl.monitor.fit_noise import EvalCounts

        path = self.run_dir / "evals.jsonl"
        if not path.is_file():
            return None
        by_step = {}
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if isinstance(row, dict) and isinstance(row.get("correct"), list) and row["correct"]:
                by_step[row.get("step")] = row
        rows = [by_step.get(p.get("step")) for p in points]
        if any(r is None for r in rows):
            return None
        return EvalCounts([r["correct"] for r in rows], [r["k"] for r in rows])


def _axis_label(axis: str) -> str:
    return {"device_hours": "device-hours (GPU-h; core-h on CPU)", "device_seconds": "device-seconds",
            "flops": "FLOPs", "tokens": "tokens"}.get(axis, axis)


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)

"""Where a step's metrics row goes once it is complete: the live fit's
latest columns merged in, metrics.jsonl (and W&B, rl.metrics_log), the
progress line, and after an evaluation the report page. Rows held for an
interleaved evaluation come here when it lands (rl.evaluation), in order.
"""
from __future__ import annotations

import logging
from pathlib import Path

from core.errors import error_line

log = logging.getLogger(__name__)


class StepLog:
    def __init__(self, run_dir: Path, metrics_log, progress, fitter, account, k: int):
        self.run_dir, self.metrics_log, self.progress = run_dir, metrics_log, progress
        self.fitter, self.account, self.k = fitter, account, k

    def write(self, metrics: dict, progress: bool) -> None:
        """Write one row; `progress`: it also moves the progress line (a held
        row moved it when it was logged)."""
        if self.fitter is not None:
            metrics.update(self.fitter.latest())
        self.metrics_log.write(metrics)
        if progress and metrics["step"] > 0:
            self.progress.update(metrics)
        elif "eval/pass_rate" in metrics:
            self.progress.last_pass = metrics["eval/pass_rate"]
        if "eval/pass_rate" in metrics:
            self._write_report()
            self.progress.note(f"step {metrics['step']}: eval pass rate {metrics['eval/pass_rate']:.3f}"
                               f" (pass@{self.k} {metrics['eval/pass_at_k']:.3f})")

    def _write_report(self) -> None:
        """RUN_DIR/report.html, rebuilt after each evaluation (docs/report.md);
        a report that fails never stops training, and is not training compute."""
        self.account.credit()
        try:
            from rl.report import write_report
            write_report([self.run_dir], self.run_dir / "report.html")
        except Exception as err:  # noqa: BLE001
            log.warning("report.html not written: %s", error_line(err))
        self.account.leave_out()

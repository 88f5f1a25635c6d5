"""The run report: one self-contained HTML page per run (or several runs).

`write_report(run_dirs, out)` builds it (rl/report/page.py); `asymptote
report` and `asymptote backtest` are registered by rl/report/cli.py. This
package imports nothing heavy at import time, so `asymptote --help` stays fast.
"""
from __future__ import annotations

from pathlib import Path


def write_report(run_dirs: list[Path], out: Path, *, bootstrap: int | None = 0) -> Path:
    """Write the report page for RUN_DIRS to OUT (atomically); see rl/report/page.py."""
    from rl.report.page import write_report as _write

    return _write(run_dirs, out, bootstrap=bootstrap)

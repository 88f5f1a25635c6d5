"""The live console line: step, reward, pass rate, tokens/s, ETA, and the forecast.

Once the live fit has run (rl/monitor/live.py; the controller merges its
`fit/*` metrics into every step's), the line also shows the forecast pass
rate at the target budget with its interval, e.g. `fcst 0.512 [0.49, 0.53] @4.1`:
the number the monitor exists for, where a user looks first.

On a terminal it is a tqdm bar redrawn in place. In a log (stderr is not a
terminal: `make run > log`, CI, a batch job) a bar is a stream of carriage
returns that reads as one enormous line, so there the same fields are
printed as plain lines, one every `PlainTicker` period (a fraction of the run
or about ten seconds, whichever comes first), and always the last step. The
base build's SFT (`rl.base.sft`) prints its logging steps as the same lines
(`plain_line`).
"""
from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def quiet_library_bars_in_logs(stream: TextIO = sys.stderr) -> None:
    """In a log (`stream` not a terminal), turn the Hugging Face libraries'
    bars off (loading and writing weights, dataset maps) for this process
    and the processes it starts, which inherit the environment: they read
    these variables when first imported, so call this before."""
    if not interactive(stream):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def plain_line(label: str, step: int, total: int, rate: float, fields: dict) -> str:
    """One progress line for a log: `label: step 5/150  1.20 step/s  eta 2m  name value ...`
    (`rate` in steps per second, from which the ETA follows)."""
    eta = duration((total - step) / rate) if rate > 0 else "?"
    text = "  ".join(f"{k} {v}" for k, v in fields.items())
    return f"{label}: step {step}/{total}  {rate:.2f} step/s  eta {eta}  {text}"


def interactive(stream: TextIO) -> bool:
    """Whether `stream` is a terminal (a bar redraws there; elsewhere it floods the log)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class PlainTicker:
    """When a non-interactive log gets its next line: every `every` steps
    (default a twentieth of the run), after `seconds` without one, and at the last step."""

    def __init__(self, total: int, every: int | None = None, seconds: float = 10.0):
        self.total, self.every, self.seconds = total, every or max(1, total // 20), seconds
        self.last_step, self.last_t = None, time.monotonic()

    def due(self, step: int) -> bool:
        now = time.monotonic()
        if (step >= self.total or self.last_step is None or step - self.last_step >= self.every
                or now - self.last_t >= self.seconds):
            self.last_step, self.last_t = step, now
            return True
        return False


def duration(seconds: float) -> str:
    """`1h02m`, `4m05s` or `12s`."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def forecast_text(m: dict) -> str | None:
    """`0.512 [0.49, 0.53] @4.1` from fit/predicted(_lo, _hi) and fit/budget; None before the first fit."""
    try:
        pred, lo, hi = float(m["fit/predicted"]), float(m["fit/predicted_lo"]), float(m["fit/predicted_hi"])
    except (KeyError, TypeError, ValueError):
        return None
    budget = m.get("fit/budget")
    at = f" @{float(budget):.3g}" if isinstance(budget, (int, float)) else ""
    return f"{pred:.3f} [{lo:.2f}, {hi:.2f}]{at}"


class ProgressLine:
    """The run's progress on stderr (or `stream`): a bar on a terminal, plain lines in a log."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, stream: TextIO | None = None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.total, self.start, self.step = total, start, start
        self.bar = None
        self.ticker = None
        if enabled and interactive(self.stream):
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, desc="asymptote", unit="step", dynamic_ncols=True,
                            file=self.stream, mininterval=0.5)
        elif enabled:
            self.ticker = PlainTicker(total)
        self.last_pass = None
        self.t0 = time.perf_counter()
        self.tokens = 0

    def update(self, m: dict) -> None:
        self.tokens += int(m.get("rollout/gen_tokens", 0))
        if "eval/pass_rate" in m:
            self.last_pass = m["eval/pass_rate"]
        self.step += 1
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        post = {
            "reward": f"{m.get('rollout/reward_mean', float('nan')):.3f}",
            "pass": "-" if self.last_pass is None else f"{self.last_pass:.3f}",
            "tok/s": f"{self.tokens / elapsed:.0f}",
        }
        if "fit/A" in m:
            post["A"] = f"{m['fit/A']:.2f}"
        forecast = forecast_text(m)
        if forecast:
            post["fcst"] = forecast
        if self.bar is not None:
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
        elif self.ticker.due(self.step):
            print(plain_line("asymptote", self.step, self.total, (self.step - self.start) / elapsed, post),
                  file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        elif self.enabled:
            print(text, flush=True)

    def warn(self, text: str) -> None:
        """A line the user must see, progress line or not."""
        if self.bar is not None:
            self.bar.write(f"asymptote: {text}", file=self.stream)
        else:
            print(f"asymptote: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

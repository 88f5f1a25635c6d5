"""The live console line: step, reward, pass rate, tokens/s, ETA, and the forecast.

Once the live fit has run (rl/monitor/live.py; the controller merges its
`fit/*` metrics into every step's), the line also shows the forecast pass
rate at the target budget with its interval, e.g. `fcst 0.512 [0.49, 0.53] @4.1`:
the number the monitor exists for, where a user looks first.
"""
from __future__ import annotations

import sys
import time


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
    def __init__(self, total: int, start: int = 0, enabled: bool = True):
        from tqdm import tqdm
        self.enabled = enabled
        self.bar = tqdm(total=total, initial=start, desc="asymptote", unit="step", dynamic_ncols=True,
                        file=sys.stderr, disable=not enabled, mininterval=0.5)
        self.last_pass = None
        self.t0 = time.perf_counter()
        self.tokens = 0

    def update(self, m: dict) -> None:
        self.tokens += int(m.get("rollout/gen_tokens", 0))
        if "eval/pass_rate" in m:
            self.last_pass = m["eval/pass_rate"]
        post = {
            "reward": f"{m.get('rollout/reward_mean', float('nan')):.3f}",
            "pass": "-" if self.last_pass is None else f"{self.last_pass:.3f}",
            "tok/s": f"{self.tokens / max(time.perf_counter() - self.t0, 1e-9):.0f}",
        }
        if "fit/A" in m:
            post["A"] = f"{m['fit/A']:.2f}"
        forecast = forecast_text(m)
        if forecast:
            post["fcst"] = forecast
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def note(self, text: str) -> None:
        self.bar.write(text) if self.enabled else None

    def warn(self, text: str) -> None:
        """A line the user must see, progress line or not."""
        if self.enabled:
            self.bar.write(f"asymptote: {text}", file=sys.stderr)
        else:
            print(f"asymptote: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()

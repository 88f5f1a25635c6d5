"""Cumulative compute of a run on three axes: device time, FLOPs, tokens.

Every training step adds what it spent; the totals go into metrics.jsonl as
`compute/*` columns and are the x-axis of the scaling fit. They are part of the
checkpoint (`state_dict`), so a resumed run continues counting instead of
restarting at zero. Judging (generative rewards) has its own columns beside
them, and the GenRM paper's accounting (rl.monitor.judge_compute).

Device time is accelerator-seconds: GPU-seconds (wall time x GPUs held) on
GPU, and on CPU the core-seconds actually used (user + system CPU time of the
process and its waited-for children, `resource.getrusage`), so "device hours"
on CPU means core-hours. `DeviceClock` measures either; the run's compute
account (rl.compute_account) reads one for every process of the run.

FLOPs are analytic (PaLM, Chowdhery et al. 2022, App. B), per token:

    train:    6 N + 12 L h s      (forward + backward)
    generate: 2 N +  4 L h s      (forward only)

N = parameters in matmuls (non-embedding parameters plus the LM head),
L = layers, h = hidden size, s = attended context length. The attention term
counts QK^T and AV over the full context (no causal halving, like PaLM); for
generation pass the mean context length if you want the causal average.
"""
from __future__ import annotations

import time
from typing import Callable

from core.clocks import process_core_seconds
from rl.monitor.judge_compute import JUDGE_FIELDS, genrm_columns

_FIELDS = ("device_seconds", "gen_tokens", "train_tokens", "gen_flops", "train_flops")
# judge compute (rl.monitor.judge_compute) and the samples it is per; older checkpoints lack them
_OPTIONAL = ("gen_samples", *JUDGE_FIELDS)


def flops_per_token(n_params: int, n_layers: int, hidden: int, seq_len: int, *, train: bool) -> float:
    """Analytic FLOPs for one token: 6N + 12·L·h·s (train) or 2N + 4·L·h·s (generate)."""
    if min(n_params, n_layers, hidden, seq_len) < 0:
        raise ValueError("flops_per_token: sizes must be non-negative")
    if train:
        return 6.0 * n_params + 12.0 * n_layers * hidden * seq_len
    return 2.0 * n_params + 4.0 * n_layers * hidden * seq_len


class DeviceClock:
    """Accelerator-seconds since the last `lap()`.

    On GPU (`n_gpus > 0`): wall seconds x `n_gpus` (the GPUs are held whether
    busy or not, which is what GPU-hours bill). On CPU: the core-seconds
    `core_seconds()` reads, by default this process's and its reaped
    children's; the compute account (rl.compute_account) passes the sum of
    every process of the run, since Ray actors count their own.
    """

    def __init__(self, n_gpus: float = 0, core_seconds: Callable[[], float] = process_core_seconds):
        self.n_gpus, self._core_seconds = n_gpus, core_seconds
        self._last = self.read()

    def read(self) -> float:
        """Accelerator-seconds so far (since an arbitrary origin)."""
        return time.perf_counter() * self.n_gpus if self.n_gpus else self._core_seconds()

    def lap(self) -> float:
        """Accelerator-seconds since the last lap (or since it was built);
        never negative (a replaced actor's time restarts from zero)."""
        now = self.read()
        spent = max(0.0, now - self._last)
        self._last = now
        return spent


class ComputeLedger:
    """Running totals of device time, tokens and FLOPs, split generation / training."""

    def __init__(self) -> None:
        self._t = dict.fromkeys(_FIELDS + _OPTIONAL, 0.0)

    def add(self, *, device_seconds: float, gen_tokens: int, train_tokens: int,
            gen_flops: float, train_flops: float) -> None:
        """Add one step's spending; every amount must be >= 0."""
        step = dict(device_seconds=device_seconds, gen_tokens=gen_tokens, train_tokens=train_tokens,
                    gen_flops=gen_flops, train_flops=train_flops)
        for k, v in step.items():
            if not v >= 0:
                raise ValueError(f"ComputeLedger.add: {k} must be >= 0, got {v}")
        for k, v in step.items():
            self._t[k] += float(v)

    def exclude(self, device_seconds: float) -> None:
        """Take device time back out of the totals: work found afterwards not
        to be training (an interleaved evaluation's share, rl.evaluation)."""
        if not device_seconds >= 0:
            raise ValueError(f"ComputeLedger.exclude: device_seconds must be >= 0, got {device_seconds}")
        self._t["device_seconds"] = max(0.0, self._t["device_seconds"] - float(device_seconds))

    def add_judge(self, *, samples: int, usage: dict[str, float]) -> None:
        """Add one step's scored samples and judge usage (`JUDGE_FIELDS`, e.g.
        from `JudgeMeter.spent`; missing keys are 0); amounts must be >= 0."""
        step = {"gen_samples": samples, **{k: usage.get(k, 0.0) for k in JUDGE_FIELDS}}
        for k, v in step.items():
            if not v >= 0:
                raise ValueError(f"ComputeLedger.add_judge: {k} must be >= 0, got {v}")
        for k, v in step.items():
            self._t[k] += float(v)

    @property
    def device_seconds(self) -> float:
        return self._t["device_seconds"]

    @property
    def device_hours(self) -> float:
        return self._t["device_seconds"] / 3600.0

    @property
    def flops(self) -> float:
        return self._t["gen_flops"] + self._t["train_flops"]

    @property
    def tokens(self) -> int:
        return int(self._t["gen_tokens"] + self._t["train_tokens"])

    def totals(self) -> dict[str, float]:
        """Cumulative columns for metrics.jsonl (`compute/<axis>`, the fit's x)."""
        t = self._t
        return {
            "compute/device_seconds": t["device_seconds"],
            "compute/device_hours": self.device_hours,
            "compute/flops": self.flops,
            "compute/gen_flops": t["gen_flops"],
            "compute/train_flops": t["train_flops"],
            "compute/tokens": self.tokens,
            "compute/gen_tokens": int(t["gen_tokens"]),
            "compute/train_tokens": int(t["train_tokens"]),
            **genrm_columns(t),  # judge compute, and the GenRM paper's C = S (1 + lambda V)
        }

    def state_dict(self) -> dict[str, float]:
        return dict(self._t)

    def load_state_dict(self, state: dict[str, float]) -> None:
        missing = set(_FIELDS) - set(state)
        if missing:
            raise ValueError(f"ComputeLedger.load_state_dict: missing {sorted(missing)}")
        self._t = {k: float(state.get(k, 0.0)) for k in _FIELDS + _OPTIONAL}

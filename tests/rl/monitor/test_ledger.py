"""Compute ledger totals, resume, FLOPs per token and per step, the device
clock on CPU and GPU; MonitorConfig checks. (The process clocks the device
clock sums are tested in tests/core/test_clocks.py.)"""
from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from rl.monitor.config import MonitorConfig
from core.clocks import process_core_seconds
from rl.monitor.ledger import ComputeLedger, DeviceClock, flops_per_token


def _step(ledger, k=1):
    ledger.add(device_seconds=1800.0 * k, gen_tokens=1000 * k, train_tokens=400 * k,
               gen_flops=2e12 * k, train_flops=6e12 * k)


def test_totals_accumulate_with_split():
    led = ComputeLedger()
    _step(led)
    _step(led, 2)
    t = led.totals()
    assert t["compute/device_seconds"] == 5400.0
    assert t["compute/device_hours"] == 1.5
    assert t["compute/gen_tokens"] == 3000 and t["compute/train_tokens"] == 1200
    assert t["compute/tokens"] == 4200
    assert t["compute/gen_flops"] == 6e12 and t["compute/train_flops"] == 18e12
    assert t["compute/flops"] == 24e12


def test_resume_continues_counting():
    led = ComputeLedger()
    _step(led)
    state = led.state_dict()
    resumed = ComputeLedger()
    resumed.load_state_dict(state)
    _step(resumed)
    uninterrupted = ComputeLedger()
    _step(uninterrupted)
    _step(uninterrupted)
    assert resumed.totals() == uninterrupted.totals()
    with pytest.raises(ValueError, match="missing"):
        ComputeLedger().load_state_dict({"device_seconds": 1.0})


def test_negative_spend_rejected():
    with pytest.raises(ValueError, match="gen_tokens"):
        ComputeLedger().add(device_seconds=1, gen_tokens=-1, train_tokens=0, gen_flops=0, train_flops=0)


def test_flops_per_token_palm_formula():
    # A 1.3B-ish model: N=1.2e9, L=24, h=2048, s=2048.
    n, L, h, s = 1.2e9, 24, 2048, 2048
    assert flops_per_token(n, L, h, s, train=True) == 6 * n + 12 * L * h * s
    assert flops_per_token(n, L, h, s, train=False) == 2 * n + 4 * L * h * s
    # Training a token costs 3x generating it (forward + backward = 3 forwards).
    assert flops_per_token(n, L, h, s, train=True) == pytest.approx(3 * flops_per_token(n, L, h, s, train=False))


def test_cpu_clock_counts_core_seconds():
    clock = DeviceClock(n_gpus=0)
    before = process_core_seconds()
    total = 0
    for i in range(2_000_000):  # ~0.1 s of one core
        total += i
    spent = clock.lap()
    assert spent > 0
    assert spent == pytest.approx(process_core_seconds() - before, abs=0.05)
    assert clock.lap() < spent  # a lap restarts the count


def test_cpu_clock_sums_the_seconds_it_is_given_and_never_goes_back():
    """The compute account's clock reads every process of the run; a
    replaced actor restarts its count, which is a lap of 0, not a negative one."""
    readings = iter([10.0, 12.5, 12.75, 3.0, 4.0])
    clock = DeviceClock(n_gpus=0, core_seconds=lambda: next(readings))
    assert [clock.lap() for _ in range(4)] == [2.5, 0.25, 0.0, 1.0]


def test_gpu_clock_bills_wall_time_times_gpus_held():
    t0 = time.perf_counter()
    clock = DeviceClock(n_gpus=1.5, core_seconds=lambda: pytest.fail("a GPU clock reads no CPU time"))
    t1 = time.perf_counter()
    time.sleep(0.05)
    t2 = time.perf_counter()
    spent = clock.lap()
    t3 = time.perf_counter()
    assert 1.5 * (t2 - t1) <= spent <= 1.5 * (t3 - t0)


def test_step_flops_use_each_samples_real_lengths():
    from rl.monitor.utilisation import step_flops
    from rollout.types import Group, Sample

    def sample(n):
        return Sample(token_ids=[1] * n, logprobs=[0.0] * n, versions=[0] * n, finish_reason="stop")

    group = Group(prompt={}, prompt_ids=[7] * 10, samples=[sample(4), sample(6)])
    gen, train = step_flops([group], train_lengths=[14, 16], dropped=5, n_params=100, layers=2, hidden=8)
    # generate 2N + 4Lh(s): s = prompt + half the completion; 64 = 4 * 2 * 8
    kept = 4 * (200 + 64 * (10 + 2)) + 6 * (200 + 64 * (10 + 3))  # 3872 + 6192
    assert gen == kept + 5 * kept / 10  # dropped tokens at the kept tokens' mean cost
    # train 6N + 12Lh(s): s = the whole row; 192 = 12 * 2 * 8
    assert train == 14 * (600 + 192 * 14) + 16 * (600 + 192 * 16)


def test_monitor_config_defaults_and_checks():
    cfg = MonitorConfig()
    assert cfg.x_axis == "device_hours" and cfg.method == "direct" and cfg.interval == 0.9
    assert MonitorConfig(burn_in_fraction=3).burn_in_fraction == 3
    for bad in (dict(burn_in_fraction=1.5), dict(target_budget=0), dict(bootstrap=5), dict(interval=1.0),
                dict(min_points=2), dict(x_axis="gpu_days"), dict(unknown=1)):
        with pytest.raises(ValidationError):
            MonitorConfig(**bad)


def test_config_imports_without_heavy_modules():
    import subprocess
    import sys

    code = ("import sys; import rl.monitor.config; "
            "bad = [m for m in ('torch', 'ray', 'vllm', 'scipy', 'matplotlib') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)

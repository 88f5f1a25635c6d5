"""The run's compute account: what a training step spent goes into the
ledger (rl.monitor.ledger), and what is not training is left out of it.

One clock reads the whole run's device time (`DeviceClock`): on GPU the wall
time of every GPU held; on CPU the core-seconds of every process of the run,
each read where it runs: the rollout workers, the learner ranks and the hub
replicas report their own (core.clocks), and the driver counts its loop's
thread only (`ThreadClock`): a local Ray cluster's processes are its
children, and the live fit's thread (and the BLAS threads it starts) is
bookkeeping. The account reads the clock once per step and at the edges of
what it leaves out:

- a waited-for evaluation: all device time while it runs, and its judging
  (a judge term scores evaluation samples too);
- an interleaved evaluation: its estimated share of the rollout side's time
  (rl.evaluation), taken back out of the ledger when it lands;
- writing the report.

Judging is counted in its own columns (rl.monitor.judge_compute), never in
device time: the hub reports it apart from its replicas' core-seconds.
"""
from __future__ import annotations

import logging
import time

from core.clocks import ThreadClock
from core.errors import error_line
from rl.monitor.judge_compute import JudgeMeter
from rl.monitor.ledger import ComputeLedger, DeviceClock
from rl.monitor.utilisation import step_flops
from rollout.types import RolloutBatch

log = logging.getLogger(__name__)


class ComputeAccount:
    def __init__(self, ledger: ComputeLedger, fleet, learner, hub, *, n_gpus: float, rollout_gpus: float,
                 n_params: int, arch: dict, hub_restarts0: int = 0):
        """Start counting now (the hub just started: its judge counters are at 0);
        built in the thread that runs the loop, whose CPU time is the driver's.
        `hub_restarts0`: the run's hub replica restarts before this hub."""
        self.ledger, self.fleet, self.hub, self.hub_restarts0 = ledger, fleet, hub, hub_restarts0
        self.n_params, self.arch, self.rollout_gpus = n_params, arch, rollout_gpus
        self._judge = JudgeMeter()
        driver = ThreadClock()
        self._clock = DeviceClock(n_gpus, lambda: (fleet.cpu_seconds() + learner.cpu_seconds() + hub.cpu_seconds()
                                                   + driver.seconds()))

    def step(self, rollout: RolloutBatch, batch, dropped: int = 0) -> dict:
        """Account one training step: device time since the last reading,
        tokens, FLOPs and judging; the step's and the running totals' columns."""
        spent = self._clock.lap()
        gen_tokens = sum(len(s.token_ids) for s in rollout.samples) + dropped
        train_tokens = int(batch.lengths_b.sum()) if batch is not None else 0
        gen_flops, train_flops = step_flops(rollout.groups, batch.lengths_b.tolist() if batch is not None else [],
                                            dropped, self.n_params, self.arch["layers"], self.arch["hidden"])
        self.ledger.add(device_seconds=spent, gen_tokens=gen_tokens, train_tokens=train_tokens,
                        gen_flops=gen_flops, train_flops=train_flops)
        self.ledger.add_judge(samples=len(rollout.samples), usage=self._judge_usage())
        return {"rollout/gen_tokens": gen_tokens, "train/tokens_trained": train_tokens, **self.ledger.totals()}

    def hub_restarts(self) -> int:
        """Hub replica restarts of the whole run so far. On CPU the clock's last
        reading (`step`) has just polled the replicas (hub.cpu_seconds); on
        GPU they are polled now."""
        return self.hub_restarts0 + self.hub.replica_restarts(poll=bool(self._clock.n_gpus))

    def totals(self) -> dict:
        return self.ledger.totals()

    def credit(self) -> None:
        """Device time since the last reading into the ledger now, so what
        follows (an evaluation, the report) can be left out."""
        self.ledger.add(device_seconds=self._clock.lap(), gen_tokens=0, train_tokens=0,
                        gen_flops=0.0, train_flops=0.0)

    def leave_out(self) -> float:
        """Device time since the last reading is not training compute (a
        waited-for evaluation, writing the report): it is dropped; returned."""
        return self._clock.lap()

    def leave_out_judging(self) -> None:
        """Judging since the last reading scored no training sample (a
        waited-for evaluation's): dropped."""
        self._judge_usage()

    def exclude(self, device_seconds: float) -> None:
        """Take device time already in the ledger back out (an interleaved
        evaluation's share, rl.evaluation)."""
        self.ledger.exclude(device_seconds)

    def rollout_seconds(self) -> float:
        """The rollout side's device seconds so far (since an arbitrary origin):
        on GPU the rollout GPUs' wall time, on CPU the rollout workers' and the
        reward hub's core-seconds."""
        if self.rollout_gpus:
            return time.perf_counter() * self.rollout_gpus
        return self.fleet.cpu_seconds() + self.hub.cpu_seconds()

    def _judge_usage(self) -> dict:
        """Judge compute since the last reading, from the hub's `judge_usage()`
        (empty without judge kinds); a failed poll is a warning, not a crash."""
        usage = getattr(self.hub, "judge_usage", None)
        try:
            return self._judge.spent(usage()) if usage is not None else {}
        except Exception as err:  # noqa: BLE001
            log.warning("judge usage not read from the hub: %s", error_line(err))
            return {}

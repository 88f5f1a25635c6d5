"""Per-step resource readings of a run: peak memory per role, how idle the
engines and the learner were, and FLOPs from the step's real lengths.

Each reading is a metric in metrics.jsonl (`mem/<role>_peak_gb`,
`time/engine_idle`, `time/learner_idle`); a failed read is a warning and no
metric, never a stopped run. Memory is each process's peak resident set
(VmHWM) since the previous step (`core.clocks.peak_rss_bytes`); idle is
1 - busy seconds / wall seconds between two reads (one read per step, so
a step's evaluation and checkpoint count in the next step's window), where an engine is busy while its
thread steps, loads weights or scores, and the learner (rank 0) while it
trains or pushes weights.
"""
from __future__ import annotations

import logging
import time

import ray

from core.clocks import peak_rss_bytes
from rl.monitor.ledger import flops_per_token

log = logging.getLogger(__name__)


def step_flops(groups, train_lengths: list[int], dropped: int, n_params: int, layers: int,
               hidden: int) -> tuple[float, float]:
    """(generation, training) FLOPs of a step from its real lengths: a
    sampled token attends to its prompt and half its own completion on
    average; a trained row's tokens attend to the whole row. Dropped tokens
    (dynamic sampling) cost as much as this step's average kept one."""
    gen, count = 0.0, 0
    for g in groups:
        for s in g.samples:
            m = len(s.token_ids)
            gen += m * flops_per_token(n_params, layers, hidden, len(g.prompt_ids) + m // 2, train=False)
            count += m
    gen += dropped * (gen / count if count else flops_per_token(n_params, layers, hidden, 0, train=False))
    train = sum(int(m) * flops_per_token(n_params, layers, hidden, int(m), train=True) for m in train_lengths)
    return gen, train


class UtilisationProbe:
    """Reads the learner ranks' and rollout workers' peak memory and busy
    seconds once per step (`read()`), and the driver's own peak."""

    def __init__(self, learner_actors: list, fleet):
        self.learner_actors, self.fleet = learner_actors, fleet
        self._t, self._busy = time.perf_counter(), self._poll_busy()

    def _poll_busy(self) -> list[float] | None:
        try:
            return ray.get([self.learner_actors[0].busy_seconds.remote()]
                           + [w.busy_seconds.remote() for w in self.fleet.workers], timeout=60)
        except Exception as err:  # noqa: BLE001 - a monitor never stops the run
            log.warning("busy time not read: %s", str(err).strip().splitlines()[-1][:200] if str(err) else err)
            return None

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        try:
            learner = ray.get([a.peak_rss_gb.remote() for a in self.learner_actors], timeout=60)
            rollout = ray.get([w.peak_rss_gb.remote() for w in self.fleet.workers], timeout=60)
            out = {"mem/learner_peak_gb": max(learner), "mem/learner0_peak_gb": learner[0],
                   "mem/rollout_peak_gb": max(rollout)}
        except Exception as err:  # noqa: BLE001
            log.warning("peak memory not read: %s", str(err).strip().splitlines()[-1][:200] if str(err) else err)
        out["mem/driver_peak_gb"] = peak_rss_bytes(reset=True) / 2**30
        last, self._busy = self._busy, self._poll_busy()
        now = time.perf_counter()
        wall, self._t = now - self._t, now
        if last is not None and self._busy is not None and len(last) == len(self._busy) and wall > 0:
            spent = [max(0.0, b - a) for a, b in zip(last, self._busy)]  # a replaced worker restarts at 0
            out["time/learner_idle"] = max(0.0, 1.0 - spent[0] / wall)
            out["time/engine_idle"] = max(0.0, 1.0 - sum(spent[1:]) / len(spent[1:]) / wall)
        return out

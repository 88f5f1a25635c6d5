"""What the controller must remember across a resume, besides the learner's
model and optimizer (those are DCP shards in the same checkpoint).

- `step`: learner steps done (= policy version of the weights);
- `sampler`: the prompt order, epoch and position, per-prompt correct/total
  counts, the retired set (No-Positive-Resampling) and a curriculum epoch's
  order (rl.data.sampler);
- `pending`: the prompts of rollout jobs already drawn for steps >= `step`
  but not trained yet. On resume these prompts are *regenerated* with the
  restored weights, never re-drawn and never dropped: the data frontier is
  exactly where training stopped. (In-flight generations are not saved: they
  were made by weights the resumed learner may not reproduce bit for bit, and
  regenerating k steps of rollouts costs seconds.)
- `carried`: partial rollouts (Kimi k1.5): groups with a response cut at the
  segment budget, continued by a later job. Saved whole (their tokens,
  log-probs and versions), since they cannot be regenerated: groups carried
  into a job still in flight are saved with them (`carried_inflight`) and
  carried again on resume;
- `ledger`: cumulative compute, so the fit's x axis continues;
- `evals`: (step, compute, pass rate) points of the scaling fit;
- `probe`: the fixed batch of the train/inference mismatch probe;
- `faults`: counters of every recovery (rollout restarts, hub replacements,
  checkpoint write failures, learner restarts, resumes), logged every step.

Rollout workers keep no RNG state worth saving: every job is seeded from the
run seed and its job id, so a regenerated job draws the same random numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

FAULT_KEYS = ("rollout_restarts", "hub_restarts", "checkpoint_failures", "learner_restarts", "resumes")


@dataclass
class RunState:
    step: int = 0
    sampler: Any = None
    ledger: Any = None
    pending: dict[int, list] = field(default_factory=dict)  # step -> prompts of in-flight jobs
    carried: list[dict] = field(default_factory=list)  # unfinished groups (Group.to_dict) awaiting a job
    carried_inflight: dict[int, list] = field(default_factory=dict)  # job's first step -> groups it continues
    evals: list[dict] = field(default_factory=list)  # (step, compute, pass rate) points for the fit
    probe: Optional[dict] = None  # fixed (prompt, completion) token ids for the mismatch probe
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KEYS, 0))

    def state_dict(self) -> dict:
        return {"step": self.step, "sampler": self.sampler.state_dict(), "ledger": self.ledger.state_dict(),
                "pending": {str(k): v for k, v in self.pending.items()},
                "carried": [g for gs in self.carried_inflight.values() for g in gs] + self.carried,
                "evals": self.evals,
                "probe": self.probe, "faults": self.faults}

    def load_state_dict(self, d: dict) -> None:
        self.step = d["step"]
        self.sampler.load_state_dict(d["sampler"])
        self.ledger.load_state_dict(d["ledger"])
        self.pending = {int(k): v for k, v in d["pending"].items()}
        self.carried, self.carried_inflight = list(d.get("carried", [])), {}
        self.evals = list(d["evals"])
        self.probe = d.get("probe")
        self.faults = {**dict.fromkeys(FAULT_KEYS, 0), **d.get("faults", {})}

    def fault_metrics(self) -> dict[str, int]:
        return {f"fault/{k}": v for k, v in self.faults.items()}

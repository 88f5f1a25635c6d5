"""The order in which training prompts are drawn, and batch shaping.

The sampler is the one owner of two things a resumed run must get back
exactly: the prompt order (epoch, position, the RNG) and what the run has
learned about each prompt (correct and total samples, the retired set). The
controller draws with `next_batch`, reports each scored training group with
`observe`, logs `metrics()` once per step and checkpoints `state_dict()`.

Modes (`DataConfig.sampling`):

- 'uniform': every prompt once per epoch, in a fresh seeded shuffle each
  epoch. Bit for bit the order this project always had.
- 'prioritised' (Kimi k1.5): each batch is drawn without replacement with
  probability ∝ max(floor, 1 − s_i), s_i the prompt's running pass rate
  (`prior_success` until it is observed). Efraimidis–Spirakis keys
  log(u)/w_i, the batch the largest: the same law as drawing one prompt at a
  time ∝ w among those left, in one pass over the pool.
- 'curriculum' (Kimi k1.5): each epoch sorted easy to hard (ties in the
  epoch's shuffled order); after `curriculum_warmup_epochs` only the hardest
  `curriculum_hard_fraction` of the pool. Difficulty is the row's
  `meta.difficulty` when the rows have one (all or none; arith rows carry
  their carry count, see rl/data/datasets.py), else 1 − s_i.

No-Positive-Resampling (ScaleRL, `npr_threshold`): a prompt whose running pass
rate reaches the threshold after `npr_min_samples` samples is retired at that
observation and never drawn again, in this epoch or any later one.

Departures from the papers, and why:

- The running pass rate is cumulative counts over the whole run (ScaleRL's
  "historical pass rate"), not an EMA: an EMA would need a horizon nobody
  published, and counts make NPR's min-samples rule mean what it says.
  It lags a fast-improving policy; NPR and the floor both tolerate that.
- Kimi's ∝ 1 − s has no floor: a prompt that scored 8/8 once would never be
  drawn again, which is NPR's job (with its own evidence rule), not the
  weighting's. Without replacement within a batch: a batch holding the same
  prompt twice spends two groups on one question.
- Kimi's curriculum is "easy first, then hard"; we sort within each epoch and
  narrow to the hard fraction after the warm-up, so the schedule is the same
  on every resume and needs no step count.
- When every prompt has retired, `next_batch` raises a UserError rather than
  quietly un-retiring prompts: the run has exhausted its data (the groups
  would all be correct and the zero-variance filter would drop them), and
  the user should choose more data or a higher threshold for a new run.

uids: `epoch × len(prompts) + index`, unique over the run (the data frontier
counts them). An epoch is one shuffled pass (uniform, curriculum) or one
weighted draw without replacement (prioritised: one per batch, more when the
pool is smaller than the batch). `observe` maps a uid back with `uid % len`.
"""
from __future__ import annotations

import heapq
import math
import random
from typing import Any, Optional

from rl.data.config import DataConfig
from core.errors import UserError

_WINDOW = ("retired", "all_correct", "none_correct")  # counted since the last metrics()


class PromptSampler:
    """Training prompts in the order `cfg.sampling` says, with per-prompt pass
    rates and No-Positive-Resampling; `state_dict()` restores the exact next
    batches."""

    def __init__(self, prompts: list[dict], seed: int = 0, cfg: Optional[DataConfig] = None):
        if not prompts:
            raise UserError("no training prompts")
        self.cfg = cfg or DataConfig()
        self.mode = self.cfg.sampling
        self.prompts = prompts
        self._labels = _difficulty_labels(prompts) if self.mode == "curriculum" else None
        self._rng = random.Random(seed)
        self._correct = [0] * len(prompts)
        self._samples = [0] * len(prompts)
        self.retired: set[int] = set()
        self.drawn = 0  # prompts handed out so far, over all epochs
        self._window = dict.fromkeys(_WINDOW, 0)
        self.epoch, self.position, self._order = -1, 0, []
        self._epoch_rng_state = self._rng.getstate()
        if self.mode != "prioritised":
            self._new_epoch()

    # ---- drawing ----------------------------------------------------------------
    def next_batch(self, n: int) -> list[dict]:
        """The next `n` prompts, each a copy of its row with a `uid`; an epoch
        boundary inside a batch starts a new epoch."""
        if len(self.retired) == len(self.prompts):
            raise UserError(f"data.npr_threshold: all {len(self.prompts)} training prompts reached a pass rate >= "
                            f"{self.cfg.npr_threshold} and were retired; nothing is left to draw (a new run needs "
                            "more prompts or a higher data.npr_threshold)")
        batch = self._weighted(n) if self.mode == "prioritised" else self._in_order(n)
        self.drawn += len(batch)
        return batch

    def _row(self, i: int) -> dict:
        return {**self.prompts[i], "uid": self.epoch * len(self.prompts) + i}

    def _in_order(self, n: int) -> list[dict]:
        batch = []
        while len(batch) < n:
            if self.position == len(self._order):
                self._new_epoch()
            i = self._order[self.position]
            self.position += 1
            if i not in self.retired:  # retired after this epoch's order was made
                batch.append(self._row(i))
        return batch

    def _new_epoch(self) -> None:
        self.epoch += 1
        self.position = 0
        self._epoch_rng_state = self._rng.getstate()
        order = list(range(len(self.prompts)))
        self._rng.shuffle(order)
        self._order = self._curriculum(order) if self.mode == "curriculum" else order

    def _curriculum(self, shuffled: list[int]) -> list[int]:
        """The epoch's prompts easy to hard (a stable sort: ties keep the
        shuffled order), narrowed to the hardest fraction after the warm-up."""
        ranked = sorted((i for i in shuffled if i not in self.retired), key=self.difficulty)
        if self.epoch >= self.cfg.curriculum_warmup_epochs:
            keep = math.ceil(self.cfg.curriculum_hard_fraction * len(ranked))
            ranked = ranked[len(ranked) - keep:]
        return ranked

    def _weighted(self, n: int) -> list[dict]:
        batch = []
        while len(batch) < n:
            self.epoch += 1  # one draw without replacement
            active = [i for i in range(len(self.prompts)) if i not in self.retired]
            keys = [(math.log(1.0 - self._rng.random()) / self.weight(i), i) for i in active]
            picked = heapq.nlargest(min(n - len(batch), len(active)), keys)
            batch += [self._row(i) for _, i in picked]
        return batch

    # ---- what the run has seen ----------------------------------------------------
    def observe(self, results: list[tuple[int, int, int]]) -> None:
        """Record scored training groups as (uid, correct samples, samples);
        a prompt crossing the No-Positive-Resampling threshold retires here."""
        for uid, correct, samples in results:
            if not 0 <= correct <= samples:
                raise ValueError(f"observe: uid {uid} has {correct} correct of {samples} samples")
            i = uid % len(self.prompts)
            self._correct[i] += correct
            self._samples[i] += samples
            if samples:
                self._window["all_correct"] += correct == samples
                self._window["none_correct"] += correct == 0
            if self._crosses_npr(i):
                self.retired.add(i)
                self._window["retired"] += 1

    def _crosses_npr(self, i: int) -> bool:
        threshold = self.cfg.npr_threshold
        return (threshold is not None and i not in self.retired and self._samples[i] >= self.cfg.npr_min_samples
                and self._correct[i] / self._samples[i] >= threshold)

    def success(self, i: int) -> float:
        """Prompt i's running pass rate (correct / samples over the run), or
        `prior_success` before its first observation."""
        return self._correct[i] / self._samples[i] if self._samples[i] else self.cfg.prior_success

    def weight(self, i: int) -> float:
        """Prompt i's 'prioritised' weight, max(floor, 1 − success)."""
        return max(self.cfg.prioritised_floor, 1.0 - self.success(i))

    def difficulty(self, i: int) -> float:
        """Prompt i's 'curriculum' difficulty: its meta.difficulty, else its
        observed failure rate."""
        return self._labels[i] if self._labels is not None else 1.0 - self.success(i)

    def metrics(self) -> dict[str, Any]:
        """The pool for the step's log. The `*_this_step` counts are since the
        previous call (the controller calls this once per step) and restart."""
        active = [i for i in range(len(self.prompts)) if i not in self.retired]
        seen = [self.success(i) for i in active if self._samples[i]]
        out = {"data/pool_size": len(active), "data/retired": len(self.retired),
               "data/retired_this_step": self._window["retired"],
               "data/groups_all_correct_this_step": self._window["all_correct"],
               "data/groups_none_correct_this_step": self._window["none_correct"],
               "data/epoch": self.epoch}
        if seen:
            out["data/pool_pass_rate"] = sum(seen) / len(seen)
        self._window = dict.fromkeys(_WINDOW, 0)
        return out

    # ---- checkpoint ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-ready: the epoch, position and RNG the next draw starts from,
        the per-prompt counts (observed prompts only) and the retired set."""
        rng = self._rng.getstate() if self.mode == "prioritised" else self._epoch_rng_state
        version, internal, gauss = rng
        state = {"sampling": self.mode, "epoch": self.epoch, "position": self.position,
                 "num_prompts": len(self.prompts), "rng_state": [version, list(internal), gauss],
                 "drawn": self.drawn, "retired": sorted(self.retired),
                 "stats": [[i, self._correct[i], self._samples[i]]
                           for i in range(len(self.prompts)) if self._samples[i]]}
        if self.mode == "curriculum":  # made from the counts at the epoch's start, which are gone
            state["order"] = list(self._order)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = len(self.prompts)
        if state["num_prompts"] != n:
            raise UserError(f"resume: the sampler state is for {state['num_prompts']} prompts, "
                            f"the data now has {n}")
        saved = state.get("sampling", "uniform")  # states from before batch shaping were uniform
        if saved != self.mode:
            raise UserError(f"resume: the sampler state was drawn with data.sampling '{saved}', "
                            f"the recipe now says '{self.mode}'")
        self._correct, self._samples = [0] * n, [0] * n
        for i, correct, samples in state.get("stats", []):
            self._correct[i], self._samples[i] = correct, samples
        self.retired = set(state.get("retired", []))
        self._window = dict.fromkeys(_WINDOW, 0)  # the step before the checkpoint logged its window
        version, internal, gauss = state["rng_state"]
        self._rng.setstate((version, tuple(internal), gauss))
        if self.mode == "prioritised":
            self.epoch, self.position, self._order = state["epoch"], 0, []
        else:
            self.epoch = state["epoch"] - 1
            self._new_epoch()  # redraws the saved epoch's shuffle, leaving the RNG where it was
            if "order" in state:
                self._order = list(state["order"])
            self.position = state["position"]
        self.drawn = state.get("drawn", state["epoch"] * n + state["position"])


def _difficulty_labels(prompts: list[dict]) -> Optional[list[float]]:
    """Every row's meta.difficulty, or None when no row has one."""
    labels = []
    for i, row in enumerate(prompts):
        meta = row.get("meta")
        value = meta.get("difficulty") if isinstance(meta, dict) else None
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"data.sampling 'curriculum': training row {i} has meta.difficulty {value!r}, "
                            "expected a number")
        labels.append(value)
    have = sum(v is not None for v in labels)
    if have == 0:
        return None
    if have < len(prompts):
        raise UserError(f"data.sampling 'curriculum': {have} of {len(prompts)} training rows have "
                        "meta.difficulty; give it to every row or to none (then the observed failure rate ranks them)")
    return [float(v) for v in labels]

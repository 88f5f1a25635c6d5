"""How noisy each evaluation is, from its own per-prompt results.

An evaluation scores a fixed set of n validation prompts with k samples each;
its pass rate is the mean of the n per-prompt fractions c_i / k. Given the
policy, the only randomness is which of the k samples come out right, so

    Var(pass rate) = (1 / n^2) * sum_i p_i (1 - p_i) / k,

and c_i (k - c_i) / (k (k - 1)) estimates p_i (1 - p_i) without bias. This is
the variance the fit weighs each point by (`EvalCounts.variances`): it knows
the size of the evaluation set, k, and how spread the prompts' difficulties
are (a set of all-easy and all-hard prompts is less noisy than one of 50/50
prompts), none of which a residual bootstrap of one curve can see.

Resampling (`EvalCounts.resample`) gives the synthetic data sets behind the
intervals, in one of two senses:

- ``"samples"``: each prompt's k samples drawn again (binomial with the
  prompt's observed rate, inflated by k/(k-1) to undo the plug-in's
  shrinkage): the same evaluation set evaluated again. The interval is then
  for the pass rate on *this* evaluation set, which is what the run itself will
  report at the budget; the default.
- ``"prompts"``: the n prompts drawn again with replacement, one draw shared by
  every evaluation (a prompt that is hard stays hard): a new evaluation set
  from the same task. The interval also holds the uncertainty of which n
  prompts were picked, a shift shared by every point of the curve; use it to
  compare against another evaluation set or a paper's number.

bench/bench_forecast.py measures the coverage of both.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from core.errors import UserError

RESAMPLE = ("samples", "prompts")


@dataclasses.dataclass
class EvalCounts:
    """Per-prompt correct counts of each evaluation (rows in compute order)."""

    correct: list[np.ndarray]  # correct[t][i]: samples of prompt i correct at evaluation t, out of k[t]
    k: np.ndarray  # samples per prompt, per evaluation

    def __post_init__(self):
        self.correct = [np.asarray(c, dtype=float).ravel() for c in self.correct]
        self.k = np.broadcast_to(np.asarray(self.k, dtype=float), (len(self.correct),)).copy()
        if not self.correct:
            raise UserError("fit: no evaluations in the per-prompt counts")
        for t, (c, k) in enumerate(zip(self.correct, self.k)):
            if c.size == 0 or not k >= 1 or np.any((c < 0) | (c > k)) or not np.all(np.isfinite(c)):
                raise UserError(f"fit: evaluation {t}: per-prompt counts must lie in [0, k={k:g}] "
                                f"and hold at least one prompt")

    def __len__(self) -> int:
        return len(self.correct)

    def pass_rates(self) -> np.ndarray:
        return np.array([float(np.mean(c / k)) for c, k in zip(self.correct, self.k)])

    def variances(self) -> np.ndarray:
        """Estimated variance of each evaluation's pass rate (floored at half a sample's weight, squared)."""
        out = []
        for c, k in zip(self.correct, self.k):
            n = c.size
            if k >= 2:
                per_prompt = c * (k - c) / (k * k * (k - 1.0))
                v = float(np.sum(per_prompt)) / n ** 2
            else:  # one sample per prompt: Bernoulli of the mean (an upper bound)
                p = float(np.mean(c))
                v = p * (1.0 - p) / n
            out.append(max(v, 0.25 / (n * k) ** 2))
        return np.array(out)

    def subset(self, keep: np.ndarray) -> "EvalCounts":
        idx = np.flatnonzero(np.asarray(keep, dtype=bool))
        return EvalCounts([self.correct[i] for i in idx], self.k[idx])

    def same_prompts(self) -> bool:
        """Every evaluation scored the same number of prompts (needed to resample prompts)."""
        return len({c.size for c in self.correct}) == 1

    def resample(self, rng: np.random.Generator, n_draws: int, how: str = "samples") -> np.ndarray:
        """(n_draws, evaluations) deviations of resampled pass rates from the observed ones."""
        if how not in RESAMPLE:
            raise UserError(f"fit: resample must be one of {RESAMPLE}, got {how!r}")
        y = self.pass_rates()
        if how == "prompts":
            if not self.same_prompts():
                raise UserError("fit: the evaluations scored different numbers of prompts; "
                                "resample='prompts' needs one evaluation set")
            frac = np.stack([c / k for c, k in zip(self.correct, self.k)])  # (T, n)
            n = frac.shape[1]
            pick = rng.integers(0, n, size=(n_draws, n))
            return frac[:, pick].mean(axis=2).T - y[None, :]
        out = np.empty((n_draws, len(self)))
        for t, (c, k) in enumerate(zip(self.correct, self.k)):
            kk = int(round(k))
            draws = rng.binomial(kk, c / k, size=(n_draws, c.size)).mean(axis=1) / k
            inflate = np.sqrt(k / (k - 1.0)) if k >= 2 else 1.0
            out[:, t] = (draws - y[t]) * inflate
        return out

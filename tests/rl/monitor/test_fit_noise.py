"""Each evaluation's variance from its per-prompt results, and the two resampling senses."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import UserError
from rl.monitor.fit_noise import EvalCounts
from rl.monitor.fit_simulate import simulate_evals


def test_variance_by_hand():
    # 4 prompts, k = 4: counts 0, 1, 2, 4. Unbiased p(1-p) per prompt = c(k-c)/(k(k-1)):
    # 0, 3/12, 4/12, 0; Var(c/k) = that / k; Var(mean) = sum / n^2 = (7/12 / 4) / 16.
    c = EvalCounts([[0, 1, 2, 4]], [4])
    assert c.pass_rates()[0] == pytest.approx(7 / 16)
    assert c.variances()[0] == pytest.approx((7 / 12) / 4 / 16)
    # all prompts at 0 or k: no sampling noise seen; floored at half a sample's weight, squared
    assert EvalCounts([[0, 4, 4]], [4]).variances()[0] == pytest.approx(0.25 / 12 ** 2)
    # k = 1: Bernoulli of the mean
    assert EvalCounts([[1, 0, 1, 1]], [1]).variances()[0] == pytest.approx(0.75 * 0.25 / 4)


def test_estimated_variance_matches_the_spread_of_repeated_evaluations():
    # The same evaluation set evaluated 400 times at one policy: the pass rates' variance
    # must match the per-evaluation estimate (within 15%, the sampling error of a variance
    # from 400 draws is ~7%).
    x = np.full(400, 1000.0)
    x[0] = 0.0
    rates, counts = simulate_evals(0.6, 1.9, 1000.0, 0.3, np.sort(x), n_prompts=200, k=4, spread=3.0, seed=0)
    est = counts.variances()[1:].mean()
    assert np.var(rates[1:], ddof=1) == pytest.approx(est, rel=0.15)
    # and the "samples" resampling reproduces that spread
    dev = counts.subset(np.arange(400) == 7).resample(np.random.default_rng(0), 4000, "samples")
    assert np.var(dev) == pytest.approx(est, rel=0.15)


def test_prompt_resampling_shares_one_draw_across_evaluations():
    # Prompt i solved at every evaluation or never: redrawing prompts moves every
    # evaluation by the same amount (a new evaluation set), re-evaluating does nothing.
    correct = [[4, 4, 0, 0, 0], [4, 4, 0, 0, 0], [4, 4, 0, 0, 0]]
    c = EvalCounts(correct, [4, 4, 4])
    dev = c.resample(np.random.default_rng(1), 500, "prompts")
    assert dev.std() > 0.1
    assert np.allclose(dev[:, 0], dev[:, 1]) and np.allclose(dev[:, 1], dev[:, 2])
    assert np.all(c.resample(np.random.default_rng(1), 50, "samples") == 0)


@pytest.mark.parametrize("correct, k, msg", [
    ([[5, 1]], [4], "in \\[0, k=4\\]"),
    ([[]], [4], "at least one prompt"),
    ([], [], "no evaluations"),
])
def test_bad_counts(correct, k, msg):
    with pytest.raises(UserError, match=msg):
        EvalCounts(correct, k)


def test_prompt_resampling_needs_one_evaluation_set():
    with pytest.raises(UserError, match="different numbers of prompts"):
        EvalCounts([[1, 2], [1, 2, 3]], [4, 4]).resample(np.random.default_rng(0), 5, "prompts")

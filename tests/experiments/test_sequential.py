"""The always-valid mSPRT keeps its false-positive promise when peeked at after every batch."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from titans.experiments.sequential import (
    always_valid_ci_halfwidth,
    effective_n,
    msprt_log_lr,
    proportions_z,
    simulate_bernoulli_ab,
    welch_z,
)

ALPHA = 0.05
TAU = 0.1  # Settings.ab_msprt_tau's default


def test_identical_arms_rarely_ever_declare_a_winner_despite_peeking_every_100() -> None:
    # 1,000 tests, each looked at after every 100 outcomes per arm up to 5,000 (50 looks)
    result = simulate_bernoulli_ab(
        0.80, 0.80, n_sims=1000, batch=100, max_per_arm=5000, alpha=ALPHA, tau=TAU, seed=11
    )
    assert result.looks == 50
    assert result.msprt_any <= ALPHA + 3 * result.mc_se_at_alpha, result


def test_peeking_at_a_fixed_horizon_z_test_inflates_false_positives() -> None:
    # why the mSPRT: the same 1,000 null tests, judged by |z| > 1.96 at every look
    result = simulate_bernoulli_ab(
        0.80, 0.80, n_sims=1000, batch=100, max_per_arm=5000, alpha=ALPHA, tau=TAU, seed=11
    )
    assert result.naive_any > 0.15, result  # measured ≈ 0.33: over six times the promised 5 %
    assert result.naive_any > 4 * result.msprt_any


def test_a_three_point_better_b_is_declared_in_most_runs() -> None:
    result = simulate_bernoulli_ab(
        0.80, 0.83, n_sims=1000, batch=100, max_per_arm=5000, alpha=ALPHA, tau=TAU, seed=12
    )
    assert result.msprt_b_better > 0.5, result  # measured ≈ 0.83
    # and when it declares, it declares B (a wrong-direction call is a rare false positive)
    assert result.msprt_any - result.msprt_b_better <= 0.01


def test_always_valid_interval_covers_the_true_difference_at_every_look() -> None:
    rng = np.random.default_rng(5)
    sims, looks, batch, p_a, p_b = 1000, 50, 100, 0.80, 0.83
    succ_a = np.cumsum(rng.binomial(batch, p_a, size=(sims, looks)), axis=1)
    succ_b = np.cumsum(rng.binomial(batch, p_b, size=(sims, looks)), axis=1)
    n = batch * np.arange(1, looks + 1, dtype=np.float64)
    rate_a, rate_b = succ_a / n, succ_b / n
    se = np.sqrt(rate_a * (1 - rate_a) / n + rate_b * (1 - rate_b) / n)
    half = always_valid_ci_halfwidth(se, effective_n(n, n), TAU, ALPHA)
    missed_ever = (np.abs(rate_b - rate_a - (p_b - p_a)) > half).any(axis=1).mean()
    assert missed_ever <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / sims)
    # it pays for that with width: wider than the fixed-horizon interval at every look
    assert (half > stats.norm.ppf(1 - ALPHA / 2) * se).all()


def test_proportions_z_squared_is_pearsons_chi_square() -> None:
    z = float(proportions_z(800, 1000, 830, 1000))
    table = np.array([[800, 200], [830, 170]])
    chi2 = stats.chi2_contingency(table, correction=False).statistic
    assert z > 0
    assert z**2 == pytest.approx(chi2, rel=1e-9)


def test_welch_z_matches_scipy_welch_statistic() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(10, 2, 300), rng.normal(9.6, 3, 500)
    z = float(welch_z(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size))
    assert z == pytest.approx(stats.ttest_ind(b, a, equal_var=False).statistic, rel=1e-12)


def test_msprt_evidence_grows_with_z_and_undefined_inputs_give_no_evidence() -> None:
    log_lr = msprt_log_lr(np.array([0.0, 1.0, 2.0, 3.0, -3.0]), 2000.0, TAU)
    assert np.all(np.diff(log_lr[:4]) > 0)
    assert log_lr[3] == pytest.approx(log_lr[4])  # two-sided
    assert log_lr[0] < 0  # no effect seen: evidence against a difference
    # empty arm / all outcomes equal: z is 0, not NaN, so nothing is declared
    assert float(proportions_z(0, 0, 5, 10)) == 0.0
    assert float(proportions_z(10, 10, 10, 10)) == 0.0
    with pytest.raises(ValueError, match="tau"):
        msprt_log_lr(1.0, 100.0, 0.0)


def test_simulation_refuses_impossible_settings() -> None:
    with pytest.raises(ValueError, match="alpha"):
        simulate_bernoulli_ab(0.8, 0.8, alpha=1.5)
    with pytest.raises(ValueError, match="batch"):
        simulate_bernoulli_ab(0.8, 0.8, batch=100, max_per_arm=50)

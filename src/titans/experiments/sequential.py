"""A/B statistics as pure numpy functions: fixed-horizon tests and the always-valid mSPRT.

The mixture sequential probability ratio test (mSPRT; Johari, Pekelis & Walsh 2017,
"Always valid inference: bringing sequential analysis to A/B testing") compares two arms
on the standardised effect ``delta = (mean_B - mean_A) / sigma``. With ``z`` the usual
two-sample z statistic and ``n_eff = n_A n_B / (n_A + n_B)``, ``z`` is approximately
``N(delta * sqrt(n_eff), 1)``; mixing the alternative over ``delta ~ N(0, tau^2)`` gives the
likelihood ratio against ``delta = 0``::

    Lambda = (1 + r) ** -0.5 * exp(z**2 * r / (2 * (1 + r))),   r = tau**2 * n_eff

``Lambda`` is a (asymptotic) martingale under the null, so by Ville's inequality the chance it
EVER reaches ``1 / alpha`` is at most ``alpha``: the test may be looked at after every batch,
and stopped at the first crossing, without inflating false positives. The naive alternative —
a fixed-horizon z-test repeated at every look — does inflate them (see
:func:`simulate_bernoulli_ab`).

Every function takes scalars or arrays (broadcasting), so thousands of simulated tests times
dozens of looks are one vectorised expression.

>>> z = np.array([0.0, 2.0, 4.0])
>>> np.round(msprt_log_lr(z, n_eff=1000.0, tau=0.1), 3)
array([-1.199,  0.619,  6.074])
>>> bool(msprt_log_lr(4.0, 1000.0, 0.1) >= np.log(1 / 0.05))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "SimulationResult",
    "always_valid_ci_halfwidth",
    "effective_n",
    "msprt_log_lr",
    "proportions_z",
    "simulate_bernoulli_ab",
    "welch_z",
]

FloatArray = npt.NDArray[np.float64]
ArrayLike = float | int | npt.ArrayLike


def effective_n(n_a: ArrayLike, n_b: ArrayLike) -> FloatArray:
    """``n_A n_B / (n_A + n_B)``: the sample size of one arm in a balanced test of equal power.

    >>> float(effective_n(100, 100)), float(effective_n(900, 100))
    (50.0, 90.0)
    """
    a = np.asarray(n_a, dtype=np.float64)
    b = np.asarray(n_b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((a > 0) & (b > 0), a * b / (a + b), 0.0)


def proportions_z(
    successes_a: ArrayLike, n_a: ArrayLike, successes_b: ArrayLike, n_b: ArrayLike
) -> FloatArray:
    """Two-proportion z statistic of ``p_B - p_A`` with the pooled (null) standard error.

    0 where it is undefined (an empty arm, or every outcome the same).

    >>> round(float(proportions_z(800, 1000, 830, 1000)), 3)
    1.728
    """
    xa = np.asarray(successes_a, dtype=np.float64)
    xb = np.asarray(successes_b, dtype=np.float64)
    na = np.asarray(n_a, dtype=np.float64)
    nb = np.asarray(n_b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (xa + xb) / (na + nb)
        se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb))
        z = (xb / nb - xa / na) / se
    return np.where(np.isfinite(z), z, 0.0)


def welch_z(
    mean_a: ArrayLike,
    var_a: ArrayLike,
    n_a: ArrayLike,
    mean_b: ArrayLike,
    var_b: ArrayLike,
    n_b: ArrayLike,
) -> FloatArray:
    """Welch's statistic of ``mean_B - mean_A`` (unpooled standard error); 0 where undefined.

    >>> round(float(welch_z(10.0, 4.0, 400, 9.5, 4.0, 400)), 3)
    -3.536
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(
            np.asarray(var_a, dtype=np.float64) / np.asarray(n_a, dtype=np.float64)
            + np.asarray(var_b, dtype=np.float64) / np.asarray(n_b, dtype=np.float64)
        )
        z = (np.asarray(mean_b, dtype=np.float64) - np.asarray(mean_a, dtype=np.float64)) / se
    return np.where(np.isfinite(z), z, 0.0)


def msprt_log_lr(z: ArrayLike, n_eff: ArrayLike, tau: float) -> FloatArray:
    """Log mixture likelihood ratio of the mSPRT for a z statistic at effective size ``n_eff``.

    ``tau`` is the standard deviation of the normal mixture over the standardised effect
    ``(B - A) / sigma``; it is most powerful for effects near ``tau``. Reject "no difference"
    the first time the value reaches ``log(1 / alpha)``.
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    zz = np.asarray(z, dtype=np.float64)
    r = tau**2 * np.asarray(n_eff, dtype=np.float64)
    return -0.5 * np.log1p(r) + zz**2 * r / (2.0 * (1.0 + r))


def always_valid_ci_halfwidth(
    se: ArrayLike, n_eff: ArrayLike, tau: float, alpha: float
) -> FloatArray:
    """Half-width of the mSPRT confidence sequence: ``estimate ± this`` covers the true
    difference at every look simultaneously with probability ``1 - alpha``.

    It is the set of differences the mSPRT would not reject; always wider than the
    fixed-horizon interval ``estimate ± 1.96 se``.

    >>> round(float(always_valid_ci_halfwidth(0.01, 1000.0, 0.1, 0.05)), 4)
    0.0304
    """
    r = tau**2 * np.asarray(n_eff, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = np.asarray(se, dtype=np.float64) * np.sqrt(
            (1.0 + r) / r * (2.0 * np.log(1.0 / alpha) + np.log1p(r))
        )
    return np.where(r > 0, width, np.inf)


@dataclass(frozen=True)
class SimulationResult:
    """Share of simulated A/B tests that ever declared a winner, per method."""

    n_sims: int
    looks: int
    #: share where the mSPRT ever crossed 1/alpha (either direction)
    msprt_any: float
    #: share where the mSPRT's first crossing declared B better
    msprt_b_better: float
    #: share where a fixed-horizon two-sided z-test was ever significant when repeated per look
    naive_any: float
    #: Monte Carlo standard error of a share near alpha
    mc_se_at_alpha: float


def simulate_bernoulli_ab(
    p_a: float,
    p_b: float,
    *,
    n_sims: int = 1000,
    batch: int = 100,
    max_per_arm: int = 5000,
    alpha: float = 0.05,
    tau: float = 0.1,
    seed: int = 0,
) -> SimulationResult:
    """Simulate ``n_sims`` A/B tests on 0/1 outcomes, each looked at after every ``batch``
    outcomes per arm up to ``max_per_arm``; count how many ever declare a winner.

    One (sims x looks) matrix of cumulative successes per arm; no Python loop over sims.

    >>> r = simulate_bernoulli_ab(0.8, 0.8, n_sims=200, max_per_arm=2000, seed=1)
    >>> r.msprt_any <= 0.05 < r.naive_any
    True
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    looks = max_per_arm // batch
    if looks < 1:
        raise ValueError(f"max_per_arm ({max_per_arm}) must be at least one batch ({batch})")
    rng = np.random.default_rng(seed)
    # successes per batch are Binomial(batch, p): exact for the counts seen at each look
    succ_a = np.cumsum(rng.binomial(batch, p_a, size=(n_sims, looks)), axis=1)
    succ_b = np.cumsum(rng.binomial(batch, p_b, size=(n_sims, looks)), axis=1)
    n = batch * np.arange(1, looks + 1, dtype=np.float64)  # per arm, broadcast over sims
    z = proportions_z(succ_a, n, succ_b, n)
    log_lr = msprt_log_lr(z, effective_n(n, n), tau)
    crossed = log_lr >= np.log(1.0 / alpha)
    ever = crossed.any(axis=1)
    first = np.argmax(crossed, axis=1)  # first crossing per sim (0 where none: masked by ever)
    b_better = ever & (z[np.arange(n_sims), first] > 0)
    naive_ever = (np.abs(z) >= stats.norm.ppf(1.0 - alpha / 2.0)).any(axis=1)
    return SimulationResult(
        n_sims=n_sims,
        looks=looks,
        msprt_any=float(ever.mean()),
        msprt_b_better=float(b_better.mean()),
        naive_any=float(naive_ever.mean()),
        mc_se_at_alpha=float(np.sqrt(alpha * (1.0 - alpha) / n_sims)),
    )

"""Named drift stat tests (KS, chi², PSI, Jensen–Shannon, normalised Wasserstein), vectorised.

Each test is a small :class:`StatTest` registered by name in :data:`REGISTRY`. It compares a
reference column with a current column and returns a :class:`DriftResult` holding the score,
the threshold actually used and the verdict, so an auditor can re-derive the verdict.

A reference is either raw data or the profile stored with a model
(:mod:`titans.monitoring.profile`): numeric columns become a :class:`NumericSample` (the sorted
finite values, or the profile's quantile sketch), categorical columns :class:`CategoricalCounts`.
All statistics are numpy over whole columns (sorted arrays, cumulative counts, bincount); scipy
is used only for p-value distributions and, for KS on small samples, scipy's own exact
lattice-path helper (see :func:`ks_p_value`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from titans.config import DriftSettings
from titans.errors import InputError
from titans.monitoring.profile import OTHER, CategoricalProfile, NumericProfile

ColumnKind = Literal["numeric", "categorical"]
ScoreKind = Literal["p_value", "distance"]

#: ks_2samp(method="auto") computes the exact p-value when both samples have at most this many rows
KS_EXACT_MAX_ROWS = 10_000
#: PSI raises empty-bin proportions to this (the log of zero is undefined)
PSI_FLOOR = 1e-4
#: normalised Wasserstein divides by the reference std, but by no less than this (as Evidently)
MIN_STD = 1e-3

FloatArray = NDArray[np.float64]


# ----------------------------------------------------------------------------- column data


@dataclass(frozen=True)
class NumericSample:
    """A numeric column as the tests see it: finite values only, sorted.

    ``probs is None``: ``values`` is the whole sample. Otherwise ``values`` are the quantile
    knots of a reference profile at levels ``probs`` (1,001 equal steps plus denser tail
    levels) and the CDF between knots is linear.
    """

    values: FloatArray
    count: int
    #: the reference profile's standard deviation (a sketch cannot give it); None: from values
    profile_std: float | None = None
    probs: FloatArray | None = None

    @classmethod
    def from_values(cls, values: Any) -> NumericSample:
        array = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(array)
        # np.sort copies, so the caller's array is never reordered
        ordered = np.sort(array if finite.all() else array[finite])
        return cls(ordered, int(ordered.size))

    @classmethod
    def from_profile(cls, profile: NumericProfile) -> NumericSample:
        knots = np.asarray(profile.quantiles, dtype=np.float64)
        if profile.count and knots.size < 2:
            raise InputError(
                "a numeric profile needs at least 2 quantiles; re-profile with n_quantiles >= 2"
            )
        probs = np.linspace(0.0, 1.0, knots.size)
        if profile.tail_quantiles and knots.size:  # denser knots in the tails, merged by level
            probs = np.concatenate((probs, np.asarray(profile.tail_levels, dtype=np.float64)))
            knots = np.concatenate((knots, np.asarray(profile.tail_quantiles, dtype=np.float64)))
            order = np.argsort(probs, kind="stable")
            probs = probs[order]
            knots = np.maximum.accumulate(knots[order])  # rounding never makes Q decrease
        count = int(profile.count) if knots.size else 0
        return cls(knots, count, profile_std=float(profile.std), probs=probs)

    @property
    def is_sketch(self) -> bool:
        return self.probs is not None

    @property
    def std(self) -> float:
        """Population standard deviation (ddof = 0, as numpy and the profile compute it)."""
        if self.profile_std is not None:
            return self.profile_std
        return float(self.values.std()) if self.count else float("nan")

    def cdf(self, x: FloatArray, side: Literal["left", "right"] = "right") -> FloatArray:
        """F(x) (``side="right"``) or its left limit F(x⁻) (``side="left"``) at sorted ``x``."""
        if self.probs is None:
            return np.searchsorted(self.values, x, side=side) / self.count
        if side == "right":
            # np.interp picks the last of tied knots: the right-continuous CDF
            return np.interp(x, self.values, self.probs, left=0.0, right=1.0)
        # mirrored, the last tied knot is the first one: the left limit
        return np.interp(-x, -self.values[::-1], self.probs[::-1], left=1.0, right=0.0)

    def quantile(self, levels: FloatArray) -> FloatArray:
        """Linear-interpolated quantiles (numpy's default method for a full sample)."""
        if self.probs is not None:
            return np.interp(levels, self.probs, self.values)
        position = levels * (self.count - 1)
        lo = np.floor(position).astype(np.intp)
        hi = np.minimum(lo + 1, self.count - 1)
        frac = position - lo
        return self.values[lo] + frac * (self.values[hi] - self.values[lo])


@dataclass(frozen=True)
class CategoricalCounts:
    """Value counts of a categorical column, missing values excluded.

    ``has_other``: the counts come from a profile that lumped rare values into ``__other__``;
    current values it does not list are then counted there.
    """

    labels: NDArray[np.object_]
    counts: NDArray[np.int64]
    has_other: bool = False

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    @classmethod
    def from_values(cls, values: pd.Series | Any) -> CategoricalCounts:
        series = values if isinstance(values, pd.Series) else pd.Series(values)
        counted = series.value_counts(dropna=True, sort=False)
        labels = np.asarray([str(label) for label in counted.index], dtype=object)
        return cls(labels, counted.to_numpy(dtype=np.int64))

    @classmethod
    def from_profile(cls, profile: CategoricalProfile) -> CategoricalCounts:
        labels = np.asarray(list(profile.frequencies), dtype=object)
        counts = np.asarray(list(profile.frequencies.values()), dtype=np.int64)
        return cls(labels, counts, has_other=OTHER in profile.frequencies)


ColumnData = NumericSample | CategoricalCounts


def aligned_counts(
    reference: CategoricalCounts, current: CategoricalCounts
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Reference and current counts over one list of categories (reference's first)."""
    known = pd.Index(reference.labels)
    position = known.get_indexer(pd.Index(current.labels))
    unseen = position < 0
    if reference.has_other:
        position[unseen] = known.get_loc(OTHER)
        size = known.size
    else:
        position[unseen] = known.size + np.arange(int(unseen.sum()))
        size = known.size + int(unseen.sum())
    ref = np.zeros(size, dtype=np.int64)
    ref[: known.size] = reference.counts
    cur = np.bincount(position, weights=current.counts, minlength=size).astype(np.int64)
    return ref, cur


# ----------------------------------------------------------------------------- statistics


def _ecdf_grid(
    reference: NumericSample, current: NumericSample
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Both CDFs on the merged breakpoints ``u`` (distinct, sorted).

    Returns ``u``, F_cur(u), F_ref(u) and F_ref(u[i+1]⁻); on [u[i], u[i+1]) F_cur is constant
    and F_ref is constant (raw sample) or linear (quantile sketch).
    """
    if reference.probs is not None:
        return _sketch_grid(reference, current)
    n_ref = reference.values.size
    merged = np.concatenate((reference.values, current.values))
    # both halves are sorted: a stable sort only merges two runs
    order = np.argsort(merged, kind="stable")
    values = merged[order]
    ends = np.flatnonzero(values[1:] != values[:-1])
    ends = np.append(ends, values.size - 1)  # the last position of each distinct value
    from_current = np.cumsum(order >= n_ref)[ends]
    f_cur = from_current / current.count
    f_ref = (ends + 1 - from_current) / reference.count
    return values[ends], f_cur, f_ref, f_ref[:-1]


def _sketch_grid(
    reference: NumericSample, current: NumericSample
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """The grid of :func:`_ecdf_grid` for a quantile-sketch reference: the current sample's
    distinct values with the knots inserted (F_ref is linear between knots)."""
    values, knots = current.values, reference.values
    ends = np.flatnonzero(values[1:] != values[:-1])
    ends = np.append(ends, values.size - 1)
    at = np.searchsorted(values[ends], knots, side="left")
    u = np.insert(values[ends], at, knots)
    f_cur = np.insert((ends + 1) / current.count, at,
                      np.searchsorted(values, knots, side="right") / current.count)  # fmt: skip
    distinct = np.empty(u.size, dtype=bool)
    distinct[0] = True
    np.not_equal(u[1:], u[:-1], out=distinct[1:])
    u, f_cur = u[distinct], f_cur[distinct]
    return u, f_cur, reference.cdf(u, "right"), reference.cdf(u[1:], "left")


def ks_statistic(reference: NumericSample, current: NumericSample) -> float:
    """Two-sided Kolmogorov–Smirnov statistic sup |F_ref − F_cur|."""
    _, f_cur, f_ref, f_ref_next = _ecdf_grid(reference, current)
    d = float(np.max(np.abs(f_ref - f_cur)))
    if reference.is_sketch and f_ref_next.size:
        d = max(d, float(np.max(np.abs(f_ref_next - f_cur[:-1]))))
    return d


def ks_p_value(statistic: float, n_reference: int, n_current: int) -> tuple[float, float]:
    """(statistic, p-value) as ``scipy.stats.ks_2samp(method="auto")`` gives them, two-sided.

    Up to KS_EXACT_MAX_ROWS rows per sample the p-value is exact: that branch calls scipy's own
    lattice-path helper (``scipy.stats._stats_py._attempt_exact_2kssamp``; re-implementing its
    compiled path counting in numpy is impractical), which also rounds the statistic to the
    lattice h / lcm(n, m). Larger samples use the kstwo distribution with n·m/(n+m) rows.
    """
    d = statistic
    if max(n_reference, n_current) <= KS_EXACT_MAX_ROWS:
        from scipy.stats import _stats_py

        g = math.gcd(n_reference, n_current)
        ok, d, p = _stats_py._attempt_exact_2kssamp(n_reference, n_current, g, d, "two-sided")
        if ok:
            return float(d), float(np.clip(p, 0.0, 1.0))
    m, n = sorted([float(n_reference), float(n_current)], reverse=True)
    p = stats.kstwo.sf(d, np.round(m * n / (m + n)))
    return float(d), float(np.clip(p, 0.0, 1.0))


def wasserstein_distance(reference: NumericSample, current: NumericSample) -> float:
    """Wasserstein-1 distance ∫ |F_ref − F_cur| dx (exact for a quantile sketch's linear CDF)."""
    u, f_cur, f_ref, f_ref_next = _ecdf_grid(reference, current)
    widths = np.diff(u)
    a = f_ref[:-1] - f_cur[:-1]
    if not reference.is_sketch:
        return float(np.dot(np.abs(a), widths))
    b = f_ref_next - f_cur[:-1]
    same_sign = a * b >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = (a * a + b * b) / (2.0 * (np.abs(a) + np.abs(b)))
    area = np.where(same_sign, np.abs(a + b) / 2.0, crossing)
    return float(np.dot(area, widths))


def chi2_contingency(
    reference_counts: NDArray[np.int64], current_counts: NDArray[np.int64]
) -> tuple[float, float]:
    """(chi², p) of the 2×k table, as ``scipy.stats.chi2_contingency`` (Yates when dof = 1)."""
    observed = np.vstack((reference_counts, current_counts)).astype(np.float64)
    observed = observed[:, observed.sum(axis=0) > 0]
    dof = observed.shape[1] - 1
    if dof <= 0:
        return 0.0, 1.0
    expected = observed.sum(axis=1)[:, None] * observed.sum(axis=0)[None, :] / observed.sum()
    if dof == 1:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    return chi2, float(stats.chi2.sf(chi2, dof))


def jensenshannon_distance(p: FloatArray, q: FloatArray) -> float:
    """Jensen–Shannon distance (natural log) of two count or proportion vectors."""
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(np.sqrt(max((left.sum() + right.sum()) / 2.0, 0.0)))


def population_stability_index(p: FloatArray, q: FloatArray) -> float:
    """PSI = Σ (q − p)·ln(q / p) over bins, proportions floored at PSI_FLOOR."""
    p = np.maximum(p / p.sum(), PSI_FLOOR)
    q = np.maximum(q / q.sum(), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def binned(reference: ColumnData, current: ColumnData, bins: int) -> tuple[FloatArray, FloatArray]:
    """Reference and current proportions per bin: categories, or for numeric columns
    ``bins`` equal-frequency bins of the reference, right-closed, open at both ends."""
    if isinstance(reference, CategoricalCounts) and isinstance(current, CategoricalCounts):
        ref, cur = aligned_counts(reference, current)
        return ref / ref.sum(), cur / cur.sum()
    if isinstance(reference, NumericSample) and isinstance(current, NumericSample):
        edges = np.unique(reference.quantile(np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        ref = np.diff(np.concatenate(([0.0], reference.cdf(edges, "right"), [1.0])))
        cur = np.diff(np.concatenate(([0.0], current.cdf(edges, "right"), [1.0])))
        return np.maximum(ref, 0.0), np.maximum(cur, 0.0)
    raise InputError("reference and current are of different kinds; compare like with like")


# ----------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class DriftResult:
    """The verdict on one column: the score, the threshold used, and how they were obtained."""

    column: str
    test: str
    #: "p_value": drifted when score < threshold; "distance": drifted when score >= threshold
    kind: ScoreKind
    score: float
    threshold: float
    drifted: bool
    column_kind: ColumnKind
    n_reference: int
    n_current: int
    #: the test statistic behind a p-value (KS D, chi²); None for distances
    statistic: float | None = None
    #: why there is no score (e.g. no non-missing values), else None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: (reference, current, settings) -> (score, statistic or None)
StatFn = Callable[[Any, Any, DriftSettings], tuple[float, float | None]]


@dataclass(frozen=True)
class StatTest:
    """A named drift test: which column kinds it takes, what its score is, where its threshold
    lives in :class:`~titans.config.DriftSettings`, and the function computing the score."""

    name: str
    title: str
    allowed_kinds: tuple[ColumnKind, ...]
    kind: ScoreKind
    threshold_setting: str
    compute: StatFn

    @property
    def default_threshold(self) -> float:
        default: float = DriftSettings.model_fields[self.threshold_setting].default
        return default

    def threshold(self, settings: DriftSettings) -> float:
        value: float = getattr(settings, self.threshold_setting)
        return value

    def verdict(self, score: float, threshold: float) -> bool:
        if not np.isfinite(score):
            return False
        return bool(score < threshold if self.kind == "p_value" else score >= threshold)

    def run(
        self,
        column: str,
        reference: ColumnData,
        current: ColumnData,
        settings: DriftSettings | None = None,
    ) -> DriftResult:
        """Score ``current`` against ``reference`` and judge it with this test's threshold."""
        settings = settings or DriftSettings()
        column_kind: ColumnKind = (
            "numeric" if isinstance(reference, NumericSample) else "categorical"
        )
        if column_kind not in self.allowed_kinds or type(reference) is not type(current):
            raise InputError(
                f"column {column!r}: test {self.name!r} does not take {column_kind} data; "
                f"use it on {' or '.join(self.allowed_kinds)} columns"
            )
        threshold = self.threshold(settings)

        def result(
            score: float, drifted: bool, statistic: float | None = None, note: str | None = None
        ) -> DriftResult:
            return DriftResult(
                column=column,
                test=self.name,
                kind=self.kind,
                score=score,
                threshold=threshold,
                drifted=drifted,
                column_kind=column_kind,
                n_reference=reference.count,
                n_current=current.count,
                statistic=statistic,
                note=note,
            )

        empty = [side for side, data in (("reference", reference), ("current", current))
                 if data.count == 0]  # fmt: skip
        if empty:
            return result(
                float("nan"), False, note=f"no non-missing values in {' and '.join(empty)}"
            )
        score, statistic = self.compute(reference, current, settings)
        return result(score, self.verdict(score, threshold), statistic)


def _ks(ref: NumericSample, cur: NumericSample, _: DriftSettings) -> tuple[float, float | None]:
    d, p = ks_p_value(ks_statistic(ref, cur), ref.count, cur.count)
    return p, d


def _chisquare(
    ref: CategoricalCounts, cur: CategoricalCounts, _: DriftSettings
) -> tuple[float, float | None]:
    chi2, p = chi2_contingency(*aligned_counts(ref, cur))
    return p, chi2


def _wasserstein(
    ref: NumericSample, cur: NumericSample, _: DriftSettings
) -> tuple[float, float | None]:
    return wasserstein_distance(ref, cur) / max(ref.std, MIN_STD), None


def _jensenshannon(
    ref: ColumnData, cur: ColumnData, s: DriftSettings
) -> tuple[float, float | None]:
    return jensenshannon_distance(*binned(ref, cur, s.histogram_bins)), None


def _psi(ref: ColumnData, cur: ColumnData, s: DriftSettings) -> tuple[float, float | None]:
    return population_stability_index(*binned(ref, cur, s.histogram_bins)), None


REGISTRY: dict[str, StatTest] = {
    t.name: t
    for t in (
        StatTest("ks", "Kolmogorov–Smirnov p-value", ("numeric",), "p_value",
                 "p_value_threshold", _ks),
        StatTest("chisquare", "chi-squared contingency p-value", ("categorical",), "p_value",
                 "p_value_threshold", _chisquare),
        StatTest("wasserstein", "Wasserstein distance / reference std", ("numeric",), "distance",
                 "wasserstein_threshold", _wasserstein),
        StatTest("jensenshannon", "Jensen–Shannon distance", ("numeric", "categorical"),
                 "distance", "jensenshannon_threshold", _jensenshannon),
        StatTest("psi", "population stability index", ("numeric", "categorical"), "distance",
                 "psi_threshold", _psi),
    )
}  # fmt: skip


def get_test(name: str) -> StatTest:
    """The registered test called ``name``; InputError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown drift test {name!r}: use one of {', '.join(sorted(REGISTRY))}"
        ) from None

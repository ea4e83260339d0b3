"""Model performance without labels (CBPE), with few labels (Wilson, t), and over an error stream.

The ModelMonitor calls these pure pieces:

* :class:`ConfidenceCalibration` maps a classifier's top-class confidence to P(prediction is
  correct), fitted (isotonic) on a labelled reference set: the model's held-out data.
* :func:`estimate_accuracy` is confidence-based performance estimation (CBPE, as in NannyML):
  the expected accuracy of a window of predictions whose labels have not arrived yet.
* :func:`realised_accuracy` / :func:`realised_mean_error` judge the labels that did arrive.
* :class:`ErrorStreamDetector` watches the stream of per-prediction errors for a change
  (river's ADWIN or Page-Hinkley), the path that catches concept drift CBPE cannot see.
* :func:`label_ready_mask` says which predictions are old enough to have a label.

CBPE assumes P(correct | confidence) does not change. Covariate shift (different inputs, same
labelling rule) keeps that true and CBPE tracks accuracy; concept drift (same inputs, new labels)
breaks it, and only labels reveal it.

>>> rng = np.random.default_rng(0)
>>> conf = rng.uniform(0.5, 1.0, 5_000)
>>> calibration = ConfidenceCalibration.fit(conf, rng.uniform(size=conf.size) < conf**2)
>>> estimate = estimate_accuracy(calibration, rng.uniform(0.5, 1.0, 1_000))
>>> round(estimate.value, 3), round(estimate.lower, 3), round(estimate.upper, 3)
(0.571, 0.541, 0.601)
>>> realised_accuracy([1, 1, 0, 1]).to_dict()["upper"] < 1.0
True
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn.isotonic import IsotonicRegression

from titans.errors import InputError, NotFittedError

__all__ = [
    "ConfidenceCalibration",
    "ErrorStreamDetector",
    "Interval",
    "estimate_accuracy",
    "label_ready_mask",
    "realised_accuracy",
    "realised_mean_error",
]


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True)
class Interval:
    """A metric's value and its two-sided interval at ``confidence_level``.

    ``detail`` holds the pieces an auditor needs to re-derive the bounds (standard errors,
    degrees of freedom, ...); it takes no part in equality.
    """

    metric: str
    value: float
    lower: float
    upper: float
    n: int
    method: str
    confidence_level: float = 0.95
    detail: Mapping[str, float] = field(default_factory=dict, compare=False)

    def contains(self, x: float) -> bool:
        """True when ``x`` lies within [lower, upper] (NaN is never contained)."""
        return bool(self.lower <= x <= self.upper)

    @property
    def width(self) -> float:
        return self.upper - self.lower

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "lower": self.lower,
            "upper": self.upper,
            "n": self.n,
            "method": self.method,
            "confidence_level": self.confidence_level,
            "detail": dict(self.detail),
        }


# ----------------------------------------------------------------------------- input checks


def _check_level(confidence_level: float) -> float:
    try:
        level = float(confidence_level)
    except (TypeError, ValueError):
        level = math.nan
    if not 0.0 < level < 1.0:
        raise InputError(f"confidence_level {confidence_level!r} is outside (0, 1): use e.g. 0.95")
    return level


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2.0))


def _float_array(values: ArrayLike, what: str) -> NDArray[np.float64]:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be numbers; got {type(values).__name__}") from None
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise InputError(f"{what} must be one-dimensional; got shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{what} is empty: pass at least one value")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(f"{what} has {bad} missing or infinite value(s): drop them first")
    return array


def _confidences(values: ArrayLike, what: str = "confidences") -> NDArray[np.float64]:
    array = _float_array(values, what)
    if array.min() < 0.0 or array.max() > 1.0:
        raise InputError(
            f"{what} must lie in [0, 1] (top-class probabilities); "
            f"got values from {array.min():g} to {array.max():g}"
        )
    return array


def _binary(values: ArrayLike, what: str) -> NDArray[np.float64]:
    array = _float_array(values, what)
    if not np.isin(array, (0.0, 1.0)).all():
        raise InputError(f"{what} must be 0/1 or True/False (1 = prediction correct)")
    return array


def _same_length(a: NDArray[Any], b: NDArray[Any], what_a: str, what_b: str) -> None:
    if a.size != b.size:
        raise InputError(
            f"{what_a} has {a.size} values but {what_b} has {b.size}: pass one per prediction"
        )


# ----------------------------------------------------------------------------- calibration


@dataclass
class ConfidenceCalibration:
    """Isotonic map from the classifier's top-class confidence to P(prediction correct),
    fitted on a labelled reference set (the model's held-out data at training time).

    Only the isotonic step function's thresholds are kept (``x``/``y``, a few dozen points), and
    ``support``: how many reference rows back the block each threshold belongs to, which is what
    :func:`estimate_accuracy` needs to price the map's own uncertainty.

    >>> cal = ConfidenceCalibration.fit([0.6, 0.7, 0.8, 0.9], [0, 1, 1, 1])
    >>> cal.x, cal.y, cal.support, cal.reference_accuracy
    ([0.6, 0.7, 0.9], [0.0, 1.0, 1.0], [1.0, 3.0, 3.0], 0.75)
    >>> cal.calibrated([0.5, 0.65, 0.95]).round(6).tolist()
    [0.0, 0.5, 1.0]
    """

    x: list[float]
    y: list[float]
    n: int
    reference_accuracy: float
    support: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, confidences: ArrayLike, correct: ArrayLike) -> ConfidenceCalibration:
        """Fit on reference rows: the model's top-class confidence and whether it was right."""
        conf = _confidences(confidences)
        hit = _binary(correct, "correct")
        _same_length(conf, hit, "confidences", "correct")
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
        iso.fit(conf, hit)
        x = np.asarray(iso.X_thresholds_, dtype=np.float64)
        y = np.asarray(iso.y_thresholds_, dtype=np.float64)
        # Each reference row's fitted value is exactly its block's value (flat between a
        # block's first and last threshold), so counting rows per distinct value counts blocks.
        levels, counts = np.unique(np.interp(conf, x, y), return_counts=True)
        support = counts[np.searchsorted(levels, y)].astype(np.float64)
        return cls(
            x=x.tolist(),
            y=y.tolist(),
            n=int(conf.size),
            reference_accuracy=float(hit.mean()),
            support=support.tolist(),
        )

    def _arrays(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if not self.x or len(self.x) != len(self.y):
            raise NotFittedError(
                "confidence calibration has no thresholds: fit it with "
                "ConfidenceCalibration.fit(confidences, correct) on labelled reference rows"
            )
        return np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)

    def calibrated(self, confidences: ArrayLike) -> NDArray[np.float64]:
        """P(prediction correct) for each confidence (clipped to the reference's range)."""
        x, y = self._arrays()
        return np.interp(_confidences(confidences), x, y)

    def to_dict(self) -> dict[str, Any]:
        return {
            "x": list(self.x),
            "y": list(self.y),
            "n": self.n,
            "reference_accuracy": self.reference_accuracy,
            "support": list(self.support),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConfidenceCalibration:
        """Rebuild from :meth:`to_dict`; a malformed dict raises InputError."""
        missing = [k for k in ("x", "y", "n", "reference_accuracy") if k not in d]
        if missing:
            raise InputError(
                f"confidence calibration is missing {', '.join(missing)}: "
                "pass a dict made by ConfidenceCalibration.to_dict()"
            )
        try:
            x = [float(v) for v in d["x"]]
            y = [float(v) for v in d["y"]]
            support = [float(v) for v in d.get("support", [])]
            n, accuracy = int(d["n"]), float(d["reference_accuracy"])
        except (TypeError, ValueError):
            raise InputError(
                "confidence calibration has a non-numeric field: "
                "pass a dict made by ConfidenceCalibration.to_dict()"
            ) from None
        if not x or len(x) != len(y) or (support and len(support) != len(x)):
            raise InputError(
                f"confidence calibration has {len(x)} x, {len(y)} y and {len(support)} support "
                "values: they must be non-empty and of equal length"
            )
        if np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
            raise InputError("confidence calibration thresholds are not increasing: refit it")
        return cls(x=x, y=y, n=n, reference_accuracy=accuracy, support=support)


# ----------------------------------------------------------------------------- estimation


def _calibration_variance(calibration: ConfidenceCalibration, conf: NDArray[np.float64]) -> float:
    """Variance of mean(calibrated(conf)) that comes from the finite reference set.

    The estimate is a weighted mix of isotonic block means ȳ_b: each current row puts weight
    (1 - t) on the threshold left of it and t on the one right of it. Block means are averages
    of n_b independent reference outcomes, so Var(ȳ_b) ≤ p_b(1 - p_b)/n_b; we use that bound with
    p_b shrunk as (n_b ȳ_b + 0.5)/(n_b + 1), so an all-correct block still carries uncertainty.
    Without stored support (a hand-built map) the whole reference counts as one block.
    """
    x, y = calibration._arrays()
    support = np.asarray(calibration.support, dtype=np.float64)
    if support.size != x.size or calibration.n <= 0:
        p = (calibration.reference_accuracy * calibration.n + 0.5) / (calibration.n + 1)
        return float(p * (1.0 - p) / max(calibration.n, 1))
    weights: NDArray[np.float64] = np.ones(1)
    if x.size > 1:
        right = np.clip(np.searchsorted(x, conf, side="right"), 1, x.size - 1)
        left = right - 1
        t = np.clip((conf - x[left]) / (x[right] - x[left]), 0.0, 1.0)
        weights = (
            np.bincount(left, weights=1.0 - t, minlength=x.size)
            + np.bincount(right, weights=t, minlength=x.size)
        ) / conf.size
    # thresholds of one block (equal y, adjacent) share one block mean: add their weights
    block = np.concatenate(([0], np.cumsum(np.diff(y) != 0)))
    block_weight = np.bincount(block, weights=weights)
    first = np.concatenate(([0], np.flatnonzero(np.diff(block)) + 1))
    n_b = np.maximum(support[first], 1.0)
    p_b = (n_b * y[first] + 0.5) / (n_b + 1.0)
    return float(np.sum(block_weight**2 * p_b * (1.0 - p_b) / n_b))


def estimate_accuracy(
    calibration: ConfidenceCalibration,
    confidences: ArrayLike,
    confidence_level: float = 0.95,
) -> Interval:
    """CBPE: the accuracy a window of unlabelled predictions will turn out to have.

    The estimate is the mean calibrated P(correct). The interval is a prediction interval for
    the window's *realised* accuracy once its labels arrive, normal approximation, clipped to
    [0, 1], with two independent variance terms (both kept in ``detail``):

    * sampling: given the p_i, the number of correct predictions is Poisson-binomial, so the
      realised accuracy varies by Σ p_i(1 - p_i) / n² around the mean p;
    * calibration: the map was learnt from a finite reference set; its block means carry
      binomial noise that reaches the estimate in proportion to how much of the window falls in
      each block (see ``_calibration_variance``). With no shift this is ≈ acc(1 - acc)/n_ref,
      the reference-size binomial term; when the window crowds into a thinly supported
      confidence range it grows, as it should.

    Measured (tests/monitoring/test_performance.py): with P(correct | c) known, the calibration
    term matches the spread of the map's real error within a few per cent even when the window
    crowds into the thin low-confidence end of the reference, where the plain reference-size
    term is a third too small; coverage of realised accuracy is ≈ 95 % with no or moderate shift
    and ≈ 93 % when the window sits at an edge of the reference's confidence range (isotonic
    regression is biased at its boundaries; that is bias, not variance, and is not priced).

    What it cannot see: a change of P(correct | confidence) itself. Concept drift (new labels
    for the same inputs) leaves the estimate exactly where it was; inputs far outside the
    reference (e.g. never-seen merchants, amounts several times larger) can change how right the
    model is at a given confidence, so the estimate moves the right way but not always the whole
    way. The labelled path (:func:`realised_accuracy`, :class:`ErrorStreamDetector`) covers both.
    """
    level = _check_level(confidence_level)
    conf = _confidences(confidences)
    p = calibration.calibrated(conf)
    n = int(conf.size)
    value = float(p.mean())
    sampling_var = float(np.sum(p * (1.0 - p))) / n**2
    calibration_var = _calibration_variance(calibration, conf)
    half = _z(level) * math.sqrt(sampling_var + calibration_var)
    return Interval(
        metric="accuracy",
        value=value,
        lower=max(0.0, value - half),
        upper=min(1.0, value + half),
        n=n,
        method="cbpe",
        confidence_level=level,
        detail={
            "sampling_se": math.sqrt(sampling_var),
            "calibration_se": math.sqrt(calibration_var),
            "reference_rows": float(calibration.n),
            "reference_accuracy": calibration.reference_accuracy,
        },
    )


def realised_accuracy(correct: ArrayLike, confidence_level: float = 0.95) -> Interval:
    """Accuracy of labelled predictions with its Wilson score interval (sound down to n = 1).

    >>> r = realised_accuracy([True] * 8 + [False] * 2)
    >>> round(r.value, 2), round(r.lower, 3), round(r.upper, 3)
    (0.8, 0.49, 0.943)
    """
    level = _check_level(confidence_level)
    hit = _binary(correct, "correct")
    n = int(hit.size)
    p = float(hit.mean())
    z = _z(level)
    denominator = 1.0 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z**2 / (4 * n**2)) / denominator
    return Interval(
        metric="accuracy",
        value=p,
        lower=max(0.0, centre - half),
        upper=min(1.0, centre + half),
        n=n,
        method="wilson",
        confidence_level=level,
        detail={"z": z},
    )


def realised_mean_error(
    abs_errors: ArrayLike, confidence_level: float = 0.95, metric: str = "mae"
) -> Interval:
    """Mean of non-negative per-prediction errors with a Student-t interval.

    The lower bound is floored at 0 (a mean of non-negative errors cannot be below it). With one
    error the spread is unknown: the interval is [0, inf). Errors that are all equal give a
    zero-width interval, which is what the t interval says; treat tiny samples with care.

    >>> r = realised_mean_error([1.0, 2.0, 3.0, 4.0])
    >>> round(r.value, 2), round(r.lower, 3), round(r.upper, 3)
    (2.5, 0.446, 4.554)
    """
    level = _check_level(confidence_level)
    errors = _float_array(abs_errors, "abs_errors")
    if errors.min() < 0.0:
        raise InputError(
            f"abs_errors has negative values (min {errors.min():g}): pass |y - prediction|"
        )
    n = int(errors.size)
    value = float(errors.mean())
    if n < 2:
        return Interval(metric, value, 0.0, math.inf, n, "t", level, {"df": 0.0})
    se = float(errors.std(ddof=1)) / math.sqrt(n)
    quantile = float(stats.t.ppf(0.5 + level / 2.0, df=n - 1))
    half = quantile * se
    return Interval(
        metric,
        value,
        max(0.0, value - half),
        value + half,
        n,
        "t",
        level,
        {"se": se, "df": float(n - 1), "t": quantile},
    )


# ----------------------------------------------------------------------------- error stream

#: river detectors by the names the monitor's settings use
_DETECTORS = ("adwin", "page_hinkley")


def _build_detector(method: str, params: Mapping[str, Any]) -> Any:
    from river import drift  # imported here: river is only needed once a detector is made

    classes = {"adwin": drift.ADWIN, "page_hinkley": drift.PageHinkley}
    if method not in classes:
        raise InputError(
            f"unknown error-stream detector {method!r}: use one of {', '.join(_DETECTORS)}"
        )
    try:
        return classes[method](**params)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"bad parameters for {method} detector {dict(params)!r}: {exc}".replace("\n", " ")
        ) from None


class ErrorStreamDetector:
    """Online change detector over a stream of per-prediction errors (0/1 for classifiers,
    absolute error for regressors), from the ``river`` library (river.drift.ADWIN default,
    river.drift.PageHinkley optional: method="adwin"|"page_hinkley", params passed through).

    The detector keeps its state between calls, so feeding a stream in chunks finds the same
    change points as feeding it at once; river resets itself after each detection.

    >>> rng = np.random.default_rng(1)
    >>> detector = ErrorStreamDetector()
    >>> errors = np.r_[rng.uniform(size=1_000) < 0.05, rng.uniform(size=1_000) < 0.5]
    >>> detector.update(errors)
    [1055]
    >>> detector.n_seen, detector.method
    (2000, 'adwin')
    """

    def __init__(self, method: str = "adwin", **params: Any) -> None:
        self._method = method
        self._params = dict(params)
        self._detector = _build_detector(method, self._params)
        self._n_seen = 0
        self._change_points: list[int] = []

    @property
    def method(self) -> str:
        return self._method

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    @property
    def n_seen(self) -> int:
        """How many errors the detector has been fed so far."""
        return self._n_seen

    @property
    def change_points(self) -> list[int]:
        """Every change detected so far, as 0-based indices in the whole stream."""
        return list(self._change_points)

    def update(self, errors: ArrayLike) -> list[int]:
        """Feed ``errors`` in order; return the stream indices where a change was detected."""
        values = np.asarray(errors, dtype=np.float64).reshape(-1)
        if values.size == 0:
            return []
        if not np.isfinite(values).all():
            raise InputError(
                "errors has missing or infinite values: drop them before updating the detector"
            )
        detector, offset = self._detector, self._n_seen
        found: list[int] = []
        # river is per-sample by design; this loop is its API, kept to two attribute lookups
        update = detector.update
        for i, value in enumerate(values.tolist()):
            update(value)
            if detector.drift_detected:
                found.append(offset + i)
        self._n_seen += int(values.size)
        self._change_points.extend(found)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self._method,
            "params": self.params,
            "n_seen": self._n_seen,
            "change_points": self.change_points,
        }


# ----------------------------------------------------------------------------- label delay


def _utc_times(values: Any) -> NDArray[np.datetime64]:
    """Nanosecond UTC datetime64 values; pandas/python datetimes must carry a time zone."""
    if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.datetime64):
        # numpy has no time zones: datetime64 values are taken to be UTC
        as_utc: NDArray[np.datetime64] = values.reshape(-1).astype("datetime64[ns]")
        return as_utc
    try:
        index = pd.DatetimeIndex(pd.to_datetime(pd.Series(values).reset_index(drop=True)))
    except (TypeError, ValueError) as exc:
        raise InputError(f"prediction_ts must be datetimes: {exc}".replace("\n", " ")) from None
    if index.tz is None and len(index) > 0:
        raise InputError(
            "prediction_ts are naive datetimes: localise them to UTC (e.g. tz_localize('UTC'))"
        )
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    times: NDArray[np.datetime64] = index.to_numpy(dtype="datetime64[ns]")
    return times


def label_ready_mask(
    prediction_ts: Any,
    now: datetime.datetime | pd.Timestamp | str,
    label_delay: datetime.timedelta | pd.Timedelta | np.timedelta64 | str,
) -> NDArray[np.bool_]:
    """True where a prediction is old enough for its label to have arrived.

    ``prediction_ts <= now - label_delay``. ``prediction_ts`` is a pandas datetime Series or
    DatetimeIndex (tz-aware), a sequence of tz-aware datetimes, or a numpy datetime64 array
    (taken as UTC). ``now`` must be tz-aware; ``label_delay`` a non-negative timedelta (or text
    pandas reads, e.g. ``"3 days"``). Missing timestamps (NaT) are never ready. An empty input
    gives an empty mask.

    >>> ts = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-09"], utc=True))
    >>> label_ready_mask(ts, pd.Timestamp("2024-01-10", tz="UTC"), "3 days").tolist()
    [True, True, False]
    """
    if isinstance(label_delay, int | float | np.number) and not isinstance(
        label_delay, np.timedelta64
    ):
        raise InputError(
            f"label_delay {label_delay!r} has no unit: pass a timedelta (e.g. timedelta(days=3))"
        )
    try:
        delay = pd.Timedelta(label_delay)
    except (TypeError, ValueError):
        raise InputError(
            f"label_delay {label_delay!r} is not a duration: pass e.g. timedelta(days=3)"
        ) from None
    if pd.isna(delay) or delay < pd.Timedelta(0):
        raise InputError(f"label_delay {label_delay!r} must be a non-negative duration")
    try:
        stamp = pd.Timestamp(now)
    except (TypeError, ValueError):
        raise InputError(f"now {now!r} is not a datetime: pass e.g. datetime.now(UTC)") from None
    if pd.isna(stamp):
        raise InputError("now is missing (NaT): pass the current UTC time")
    if stamp.tzinfo is None:
        raise InputError(f"now {now!r} is a naive datetime: pass a tz-aware UTC time")
    cutoff = (stamp.tz_convert("UTC").tz_localize(None) - delay).to_datetime64()
    times = _utc_times(prediction_ts)
    # NaT compares False, so a prediction without a timestamp is never ready
    return np.asarray(times <= cutoff.astype("datetime64[ns]"), dtype=bool)

"""Metric helpers shared by the model specs: plain functions over numpy arrays, NaN-safe."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    classification_report,
    f1_score,
)

ArrayLike = np.ndarray | Sequence[Any]


def _floats(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error; NaN when there is nothing to compare.

    >>> mae([1.0, 2.0, 4.0], [1.0, 3.0, 1.0])
    1.3333333333333333
    """
    t, p = _floats(y_true), _floats(y_pred)
    return float(np.mean(np.abs(t - p))) if t.size else math.nan


def r2(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Coefficient of determination; NaN for fewer than two rows or a constant truth.

    >>> r2([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    1.0
    """
    t, p = _floats(y_true), _floats(y_pred)
    if t.size < 2:
        return math.nan
    total = float(np.sum((t - t.mean()) ** 2))
    if total == 0.0:
        return math.nan
    return 1.0 - float(np.sum((t - p) ** 2)) / total


def mape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute percentage error (a fraction, 0.1 = 10 %) over rows with a non-zero truth.

    >>> mape([100.0, 200.0, 0.0], [110.0, 150.0, 5.0])
    0.175
    """
    t, p = _floats(y_true), _floats(y_pred)
    keep = t != 0
    if not keep.any():
        return math.nan
    return float(np.mean(np.abs((t[keep] - p[keep]) / t[keep])))


def smape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Symmetric MAPE in [0, 2]; a day where truth and forecast are both 0 counts as 0 error.

    >>> smape([100.0, 0.0, -50.0], [100.0, 0.0, 50.0])
    0.6666666666666666
    """
    t, p = _floats(y_true), _floats(y_pred)
    if not t.size:
        return math.nan
    denom = (np.abs(t) + np.abs(p)) / 2.0
    err = np.divide(np.abs(t - p), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(np.mean(err))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Macro-averaged F1 over the classes present in the truth or the predictions."""
    if len(y_true) == 0:
        return math.nan
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Share of exact matches."""
    if len(y_true) == 0:
        return math.nan
    return float(accuracy_score(y_true, y_pred))


def per_class_report(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, Any]:
    """Precision, recall, F1 and support per class (sklearn's classification report as a dict)."""
    if len(y_true) == 0:
        return {}
    report: dict[str, Any] = classification_report(
        y_true, y_pred, output_dict=True, zero_division=0
    )
    return report


def pr_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the precision-recall curve (average precision); NaN without both classes.

    >>> pr_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    1.0
    """
    y = np.asarray(labels, dtype=bool)
    if y.size == 0 or y.all() or not y.any():
        return math.nan
    return float(average_precision_score(y, _floats(scores)))


def top_share_mask(scores: ArrayLike, share: float) -> np.ndarray:
    """Boolean mask of the ``ceil(share * n)`` highest scores (ties broken by position).

    >>> top_share_mask([0.1, 0.9, 0.5, 0.7], 0.5).tolist()
    [False, True, False, True]
    """
    s = _floats(scores)
    k = min(s.size, max(1, math.ceil(share * s.size))) if s.size else 0
    mask = np.zeros(s.size, dtype=bool)
    if k:
        mask[np.argsort(-s, kind="stable")[:k]] = True
    return mask


def recall_at_share(labels: ArrayLike, scores: ArrayLike, share: float) -> float:
    """Share of positives among the ``share`` highest-scored rows; NaN without positives.

    >>> recall_at_share([0, 1, 0, 1], [0.1, 0.9, 0.5, 0.7], 0.25)
    0.5
    """
    y = np.asarray(labels, dtype=bool)
    if not y.any():
        return math.nan
    flagged = top_share_mask(scores, share)
    return float((y & flagged).sum() / y.sum())


def precision_at_share(labels: ArrayLike, scores: ArrayLike, share: float) -> float:
    """Share of positives among the ``share`` highest-scored rows; NaN for no rows."""
    y = np.asarray(labels, dtype=bool)
    flagged = top_share_mask(scores, share)
    if not flagged.any():
        return math.nan
    return float((y & flagged).sum() / flagged.sum())

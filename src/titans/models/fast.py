"""Single-row prediction without pandas or sklearn per call: the serving hot path.

:func:`fast_predictor` compiles a :class:`~titans.models.base.TrainedModel` once into plain
numpy arrays; ``predict_one(record)`` then scores one transaction dict in a fraction of a
millisecond and returns what ``trained.predict(typed_frame(pd.DataFrame([record])))`` returns
for it (the batch path spends milliseconds on pandas and sklearn's per-call checks).

Agreement with the batch path is by construction, not by approximation:

- the record is typed as :func:`~titans.models.inputs.typed_frame` types it (anything unusual,
  e.g. an amount sent as text or a date not in ``YYYY-MM-DD`` form, goes through
  ``typed_frame`` itself);
- features come from ``FeaturePipeline.entries_one``: the entries of ``transform_one``'s
  row, which equals the batch row;
- a linear model sums ``scaled value x coefficient`` over the row's nonzero columns in column
  order, as scipy's CSR product does, so decisions are bitwise equal to sklearn's;
- an IsolationForest walks all its trees at once over flat node arrays, comparing the row cast
  to float32 as sklearn does, and sums the per-tree path lengths in tree order.
"""

from __future__ import annotations

import datetime as dt
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length
from sklearn.linear_model import Ridge, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler

from titans.data.columns import SNAKE_CASE
from titans.errors import InputError
from titans.features import FeaturePipeline

# the anomaly module's own clip and token rule, so the two paths cannot drift apart
from titans.models.anomaly import _Z_CLIP, AnomalyFeatures, _token_one
from titans.models.base import TrainedModel
from titans.models.inputs import typed_frame

__all__ = [
    "AmountPredictor",
    "AnomalyPredictor",
    "CategoryPredictor",
    "FastPredictor",
    "fast_predictor",
    "typed_record",
]

_TEXT_FIELDS = ("description", "category", "payment_method", "status", "reference")
#: export headers typed_frame renames (a record using them takes the pandas route)
_EXPORT_HEADERS = frozenset(k for k, v in SNAKE_CASE.items() if k != v)
#: years pandas holds as datetime64[ns] (1677-09-21 .. 2262-04-11): full years only
_FIRST_YEAR, _LAST_YEAR = 1678, 2261
_INT64 = (-(2**63), 2**63 - 1)


class _NeedsPandas(Exception):
    """A value the fast typing does not cover; typed_frame decides."""


# ----------------------------------------------------------------------------- typing


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and value != value


def _fast_date(value: Any) -> dt.date:
    if type(value) is str:
        if len(value) != 10 or value[4] != "-" or value[7] != "-" or not value.isascii():
            raise _NeedsPandas
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise _NeedsPandas from None
    elif type(value) is dt.date:
        day = value
    else:
        raise _NeedsPandas
    if not _FIRST_YEAR <= day.year <= _LAST_YEAR:
        raise _NeedsPandas
    return day


def _fast_amount(value: Any) -> float:
    if _missing(value):
        return math.nan
    if isinstance(value, bool | np.bool_):
        raise _NeedsPandas
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, int | np.integer) and _INT64[0] <= value <= _INT64[1]:
        return float(value)
    raise _NeedsPandas


def _fast_text(value: Any) -> str | None:
    if type(value) is str:
        return value
    if _missing(value):
        return None
    raise _NeedsPandas


def _typed_by_pandas(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record through typed_frame itself (raises what the batch path raises)."""
    row = typed_frame(pd.DataFrame([dict(record)])).iloc[0]
    typed: dict[str, Any] = {
        "date": row["date"].date(),
        "type": row["type"],
        "amount": float(row["amount"]),
    }
    for field in _TEXT_FIELDS:
        typed[field] = row[field]
    return typed


def typed_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One transaction as a row of ``typed_frame(pd.DataFrame([record]))``, as plain Python.

    Keys ``date`` (a ``datetime.date``), ``type`` (``Expense`` when missing), ``amount``
    (float, NaN when missing or unreadable) and the text fields (str or None). Raises
    InputError when the record has no usable date, as the batch path does.

    >>> typed_record({"date": "2024-02-29", "amount": -12, "reference": None})["amount"]
    -12.0
    >>> typed_record({"date": "29/02/2024", "amount": "$1,200.50"})["date"]
    datetime.date(2024, 2, 29)
    """
    if not _EXPORT_HEADERS.isdisjoint(record):
        return _typed_by_pandas(record)
    if "date" not in record:
        raise InputError("transaction has no 'date'; send it as YYYY-MM-DD and retry")
    get = record.get
    try:
        kind = _fast_text(get("type"))
        typed = {
            "date": _fast_date(record["date"]),
            "type": "Expense" if kind is None else kind,
            "amount": _fast_amount(get("amount")),
        }
        for field in _TEXT_FIELDS:
            typed[field] = _fast_text(get(field))
    except _NeedsPandas:
        return _typed_by_pandas(record)
    return typed


# ----------------------------------------------------------------------------- linear part


class _SparseLinear:
    """FeaturePipeline -> MaxAbsScaler -> linear decision, on one record's nonzero columns.

    scipy's CSR x dense product adds ``value x coefficient`` over the stored columns in order,
    starting from zero. The same products summed in the same order give the same doubles:
    ``np.add.reduce`` over axis 0 adds row after row (numpy sums pairwise only along a
    contiguous reduced axis), and a single output is a 1-D sum, so it takes ``np.cumsum``.
    """

    def __init__(self, features: FeaturePipeline, scaler: MaxAbsScaler, model: Any) -> None:
        coef = np.asarray(model.coef_, dtype=np.float64)
        self.features = features
        self.inverse_scale = 1.0 / np.asarray(scaler.scale_, dtype=np.float64)
        self.clip = bool(getattr(scaler, "clip", False))
        # (n_features, n_outputs), C order: one contiguous row of coefficients per column
        self.weights = np.ascontiguousarray(coef.reshape(-1, coef.shape[-1]).T)
        self.single = self.weights.shape[1] == 1
        self.first_weights = np.ascontiguousarray(self.weights[:, 0])
        self.intercept = np.asarray(model.intercept_, dtype=np.float64).reshape(-1)

    @classmethod
    def compatible(cls, features: Any, scaler: Any, model: Any) -> bool:
        n = getattr(features, "n_features_out_", None)
        return (
            isinstance(features, FeaturePipeline)
            and features.output == "sparse"
            and isinstance(scaler, MaxAbsScaler)
            and getattr(scaler, "scale_", np.empty(0)).shape == (n,)
            and getattr(model, "coef_", np.empty(0)).shape[-1] == n
        )

    def decision(self, typed: Mapping[str, Any]) -> np.ndarray:
        """The linear decision per output (shape ``(n_outputs,)``) for a typed record."""
        column_list, value_list = self.features.entries_one(typed)
        if not column_list:
            return np.zeros_like(self.intercept) + self.intercept
        columns = np.array(column_list, dtype=np.intp)
        scaled = np.array(value_list, dtype=np.float64) * self.inverse_scale.take(columns)
        if self.clip:
            np.clip(scaled, -1.0, 1.0, out=scaled)
        if self.single:
            products = scaled * self.first_weights.take(columns)
            return np.cumsum(products)[-1:] + self.intercept
        products = scaled[:, None] * self.weights.take(columns, axis=0)
        return np.add.reduce(products, axis=0) + self.intercept


# ----------------------------------------------------------------------------- predictors


class FastPredictor(ABC):
    """A trained model compiled for one transaction at a time."""

    #: output columns, in the order of the spec's batch ``predict``
    columns: tuple[str, ...]

    @abstractmethod
    def predict_one(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Predictions for one transaction dict (snake_case keys, raw values)."""


class CategoryPredictor(FastPredictor):
    """SGDClassifier(log_loss) one-vs-rest probabilities, as ``CategorySpec.predict``."""

    def __init__(self, pipeline: Pipeline) -> None:
        features, scaler, model = (step for _, step in pipeline.steps)
        self.linear = _SparseLinear(features, scaler, model)
        self.classes = [str(c) for c in model.classes_]
        self.binary = len(self.classes) == 2
        self.columns = ("prediction", "probability", *(f"proba_{c}" for c in self.classes))

    def probabilities(self, record: Mapping[str, Any]) -> np.ndarray:
        """Class probabilities for one record, as sklearn's ``_predict_proba_lr`` gives them."""
        proba = expit(self.linear.decision(typed_record(record)))
        if self.binary:
            proba = np.concatenate([1 - proba, proba])
        else:
            total = proba.sum()
            if total == 0:  # every sigmoid underflowed: sklearn makes it uniform
                proba[:] = 1.0
                total = float(proba.size)
            proba /= total
        # each value lies in [0, 1] unless one is NaN, which the sum then is too
        if not math.isfinite(proba.sum()):  # CategorySpec.predict's "unsure" rule
            proba[:] = 1.0 / proba.size
        return proba

    def top_classes(self, record: Mapping[str, Any], k: int) -> list[tuple[str, float]]:
        """The ``k`` most likely classes with their probabilities, most likely first (ties in
        class order, as a stable argsort of the batch output orders them); the first is the
        prediction."""
        proba = self.probabilities(record)
        order = np.argsort(-proba, kind="stable")[:k].tolist()
        values = proba.tolist()
        return [(self.classes[i], values[i]) for i in order]

    def predict_one(self, record: Mapping[str, Any]) -> dict[str, Any]:
        proba = self.probabilities(record)
        best = int(proba.argmax())
        values = proba.tolist()
        out: dict[str, Any] = {"prediction": self.classes[best], "probability": values[best]}
        out.update(zip(self.columns[2:], values, strict=True))
        return out


class AmountPredictor(FastPredictor):
    """Ridge on log1p(|amount|), then ``AmountSpec.predict``'s interval arithmetic."""

    columns = ("prediction", "lower", "upper")

    def __init__(self, pipeline: Pipeline, log_interval: tuple[float, float]) -> None:
        features, scaler, model = (step for _, step in pipeline.steps)
        self.linear = _SparseLinear(features, scaler, model)
        self.lo, self.hi = float(log_interval[0]), float(log_interval[1])

    def predict_one(self, record: Mapping[str, Any]) -> dict[str, Any]:
        log_pred = self.linear.decision(typed_record(record))
        values = np.expm1(
            np.maximum(np.concatenate([log_pred, log_pred + self.lo, log_pred + self.hi]), 0.0)
        ).tolist()
        return dict(zip(self.columns, values, strict=True))


class _Forest:
    """An IsolationForest's trees as flat node arrays, walked all at once.

    Nodes of all trees are numbered consecutively; a walker holds ``slot = 2 * node`` so that
    ``children[slot + go_right]`` is the next slot. A leaf's children are the leaf itself, so
    ``max_depth`` steps put every tree's walker on its leaf. Each node carries the depth
    contribution sklearn adds when a row ends there: its depth + the average path length of
    its training samples - 1.
    """

    def __init__(self, forest: IsolationForest, n_features: int) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        path_lengths = getattr(forest, "_decision_path_lengths", None)
        average_lengths = getattr(forest, "_average_path_length_per_tree", None)
        if path_lengths is None or average_lengths is None:  # fitted by an older sklearn
            path_lengths = [tree.compute_node_depths() for tree in trees]
            average_lengths = [_average_path_length(tree.n_node_samples) for tree in trees]
        # sklearn scores on a tree's own column subset only when max_features < all columns
        subsample = forest._max_features != n_features
        subsets = [np.asarray(f, dtype=np.intp) for f in forest.estimators_features_]
        offset = 0
        roots: list[int] = []
        features: list[np.ndarray] = []
        thresholds: list[np.ndarray] = []
        children: list[np.ndarray] = []
        contributions: list[np.ndarray] = []
        missing_left: list[np.ndarray] = []
        for k, tree in enumerate(trees):
            left = np.asarray(tree.children_left, dtype=np.intp)
            right = np.asarray(tree.children_right, dtype=np.intp)
            leaf = left < 0
            own = np.arange(tree.node_count, dtype=np.intp)
            left, right = np.where(leaf, own, left), np.where(leaf, own, right)
            feature = np.where(leaf, 0, tree.feature).astype(np.intp)
            if subsample:
                feature = subsets[k][feature]
            missing = getattr(tree, "missing_go_to_left", None)
            roots.append(2 * offset)
            features.append(feature)
            thresholds.append(np.where(leaf, np.inf, tree.threshold).astype(np.float64))
            children.append(2 * (np.column_stack([left, right]).reshape(-1) + offset))
            contributions.append(path_lengths[k] + average_lengths[k] - 1.0)
            missing_left.append(
                np.zeros(tree.node_count, bool) if missing is None else np.asarray(missing, bool)
            )
            offset += tree.node_count

        def by_slot(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.repeat(np.concatenate(parts).astype(dtype), 2)

        self.roots = np.array(roots, dtype=np.intp)
        self.feature = by_slot(features, np.intp)
        self.threshold = by_slot(thresholds, np.float64)
        self.children = np.concatenate(children).astype(np.intp)
        self.contribution = by_slot(contributions, np.float64)
        self.missing_left = by_slot(missing_left, bool)
        self.steps = max(int(tree.max_depth) for tree in trees)
        denominator = len(trees) * _average_path_length([forest._max_samples])
        self.denominator = np.asarray(denominator, dtype=np.float64)

    def score(self, row: np.ndarray) -> float:
        """``-forest.score_samples(row)`` for one float64 feature row."""
        x = row.astype(np.float32).astype(np.float64)  # sklearn compares float32 values
        slot = self.roots
        feature, threshold, children = self.feature, self.threshold, self.children
        if np.isnan(x).any():  # sklearn sends a missing value where training sent them
            for _ in range(self.steps):
                value = x.take(feature.take(slot))
                go_left = np.where(
                    np.isnan(value), self.missing_left.take(slot), value <= threshold.take(slot)
                )
                slot = children.take(slot + ~go_left)
        else:
            for _ in range(self.steps):
                slot = children.take(slot + (x.take(feature.take(slot)) > threshold.take(slot)))
        # per-tree contributions summed in tree order, as sklearn adds them
        depths = np.cumsum(self.contribution.take(slot))[-1:]
        ratio = np.divide(
            depths, self.denominator, out=np.ones_like(depths), where=self.denominator != 0
        )
        return float((2 ** (-ratio))[0])


class AnomalyPredictor(FastPredictor):
    """AnomalyFeatures (ridge part in numpy) and the IsolationForest, as ``AnomalySpec``."""

    columns = ("score", "is_anomaly")

    def __init__(self, pipeline: Pipeline, threshold: float) -> None:
        features, forest = (step for _, step in pipeline.steps)
        self.features: AnomalyFeatures = features
        expected = features.expected_
        self.expected = None if expected is None else _SparseLinear(*expected.named_steps.values())
        self.forest = _Forest(forest, len(features.feature_names_out_))
        self.threshold = float(threshold)

    def feature_row(self, typed: Mapping[str, Any]) -> np.ndarray:
        """``AnomalyFeatures.transform_one`` with the expected-amount ridge in numpy."""
        f = self.features
        amount = typed["amount"]
        z = 0.0
        if math.isfinite(amount):
            expected = 0.0 if self.expected is None else float(self.expected.decision(typed)[0])
            log_amount = float(np.log1p(np.abs(np.float64(amount))))
            raw = (log_amount - expected - f.residual_center_) / f.residual_scale_
            z = min(max(raw, -_Z_CLIP), _Z_CLIP)
        category = _token_one(typed["category"])
        payment = _token_one(typed["payment_method"])
        pair = f.pair_counts_.get(f"{category}|{payment}", 0)
        rarity = -math.log(
            (pair + 1.0) / (f.category_counts_.get(category, 0) + f.n_payment_values_)
        )
        context = f.context_.transform_one(typed)[0, f.passthrough_index_]
        return np.concatenate([[z, rarity], context]).astype(np.float64)

    def predict_one(self, record: Mapping[str, Any]) -> dict[str, Any]:
        score = self.forest.score(self.feature_row(typed_record(record)))
        return {"score": score, "is_anomaly": score > self.threshold}


def _pipeline_of(state: Any) -> Any:
    return state.get("pipeline") if isinstance(state, dict) else None


def _steps(state: Any, kinds: tuple[type, ...]) -> Pipeline | None:
    """The fitted pipeline in ``state`` when its steps are exactly of these types."""
    pipeline = state.get("pipeline") if isinstance(state, dict) else None
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != len(kinds):
        return None
    steps = [step for _, step in pipeline.steps]
    if not all(isinstance(step, kind) for step, kind in zip(steps, kinds, strict=True)):
        return None
    return pipeline


def _category(state: Any) -> FastPredictor | None:
    pipeline = _steps(state, (FeaturePipeline, MaxAbsScaler, SGDClassifier))
    if pipeline is None:
        return None
    features, scaler, model = (step for _, step in pipeline.steps)
    if model.loss != "log_loss" or not _SparseLinear.compatible(features, scaler, model):
        return None
    n_classes = len(model.classes_)
    if n_classes < 2 or model.coef_.shape[0] != (1 if n_classes == 2 else n_classes):
        return None
    return CategoryPredictor(pipeline)


def _amount(state: Any) -> FastPredictor | None:
    pipeline = _steps(state, (FeaturePipeline, MaxAbsScaler, Ridge))
    if pipeline is None or "log_interval" not in state:
        return None
    features, scaler, model = (step for _, step in pipeline.steps)
    if np.ndim(model.coef_) != 1 or not _SparseLinear.compatible(features, scaler, model):
        return None
    return AmountPredictor(pipeline, state["log_interval"])


def _anomaly(state: Any) -> FastPredictor | None:
    pipeline = _steps(state, (AnomalyFeatures, IsolationForest))
    if pipeline is None or "threshold" not in state:
        return None
    features: AnomalyFeatures = pipeline.steps[0][1]
    if not hasattr(features, "feature_names_out_"):
        return None
    expected = features.expected_
    if expected is not None:
        steps = list(expected.named_steps.values())
        if len(steps) != 3 or not isinstance(steps[2], Ridge) or np.ndim(steps[2].coef_) != 1:
            return None
        if not _SparseLinear.compatible(*steps):
            return None
    return AnomalyPredictor(pipeline, state["threshold"])


_BUILDERS = {"category": _category, "amount": _amount, "anomaly": _anomaly}


def fast_predictor(trained: TrainedModel) -> FastPredictor | None:
    """A compiled single-row predictor for this trained model, or None when it has none
    (cashflow; a DummyClassifier category model; anything unexpected)."""
    # a pipeline stand-in that compiles its own single-row path (titans.optimization's ONNX)
    own = getattr(_pipeline_of(trained.state), "single_row_predictor", None)
    if callable(own):
        compiled: FastPredictor | None = own(trained)
        return compiled
    builder = _BUILDERS.get(trained.spec_name)
    return None if builder is None else builder(trained.state)

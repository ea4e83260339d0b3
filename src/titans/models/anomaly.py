"""anomaly: score how unusual a transaction is (unsupervised; labels only evaluate).

A transaction is unusual mostly *in context*: 900 for a keyboard, a laptop paid in cash, a big
weekend purchase at a merchant never seen before. :class:`AnomalyFeatures` turns a transactions
frame into a few context features, all learned without labels:

- ``amount_residual_z``: how far log1p(|amount|) is from what a ridge regression on the shared
  FeaturePipeline's features (description text, reference, category, payment method, date;
  not the amount) expects, in robust standard deviations of the training residuals;
- ``payment_rarity``: -log P(payment method | category) with add-one smoothing;
- ``amount_z_reference``, ``amount_z_category``, ``reference_frequency``, ``is_weekend``:
  straight from the FeaturePipeline.

An IsolationForest on those features gives the score (higher = more unusual); the alert
threshold is the training score quantile at ``settings.anomaly_alert_rate``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler

from titans.errors import NotFittedError, TrainingError
from titans.features import FeaturePipeline
from titans.models import metrics
from titans.models.base import Evaluation, ModelSpec, TrainedModel

logger = logging.getLogger(__name__)

#: FeaturePipeline columns passed through unchanged to the detector
PASSTHROUGH: tuple[str, ...] = (
    "amount_z_reference",
    "amount_z_category",
    "reference_frequency",
    "is_weekend",
)
FEATURE_NAMES: tuple[str, ...] = ("amount_residual_z", "payment_rarity", *PASSTHROUGH)
_NO_CATEGORY = "__none__"
#: training rows scored to set the alert threshold (a sample beyond this)
THRESHOLD_SAMPLE = 200_000
_Z_CLIP = 50.0


def _token(values: pd.Series) -> np.ndarray:
    """Normalised categorical values (strip, lower), missing as ``__none__``."""
    text = values.astype("string").str.strip().str.lower()
    return text.mask(text == "").fillna(_NO_CATEGORY).to_numpy(dtype=object)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _token_one(value: Any) -> str:
    """``_token`` for one value."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return _NO_CATEGORY
    return str(value).strip().lower() or _NO_CATEGORY


def _amount_one(value: Any) -> float:
    """The amount of one record as ``pd.to_numeric(errors="coerce")`` reads it."""
    if value is None or value is pd.NA:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _log_amount(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    amount = pd.to_numeric(_column(frame, "amount"), errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(amount)
    return np.log1p(np.abs(np.where(ok, amount, 0.0))), ok


class AnomalyFeatures(TransformerMixin, BaseEstimator):
    """Transactions frame -> the context features an anomaly detector needs (see module doc).

    ``transform_one(record)`` gives the same row as ``transform`` on a one-row frame.
    """

    def __init__(self, n_text_features: int = 2**12, alpha: float = 1.0) -> None:
        self.n_text_features = n_text_features
        self.alpha = alpha

    def fit(self, X: pd.DataFrame, y: Any = None) -> AnomalyFeatures:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: pd.DataFrame, y: Any = None, **fit_params: Any) -> np.ndarray:
        """Fit, and return the features of ``X`` (hashing its text once, not twice)."""
        log_amount, ok = _log_amount(X)
        z = np.zeros(len(X))
        features = FeaturePipeline(
            text="hash", n_text_features=self.n_text_features, use_amount=False, use_category=True
        )
        scale = MaxAbsScaler()
        ridge = Ridge(alpha=self.alpha, solver="lsqr", tol=1e-3)
        self.expected_: Pipeline | None = None
        self.residual_center_, self.residual_scale_ = 0.0, 1.0
        if ok.sum() >= 2:
            matrix = scale.fit_transform(features.fit_transform(X[ok]))
            ridge.fit(matrix, log_amount[ok])
            resid = log_amount[ok] - ridge.predict(matrix)
            q25, q50, q75 = np.quantile(resid, [0.25, 0.5, 0.75])
            self.residual_center_ = float(q50)
            self.residual_scale_ = float(max((q75 - q25) / 1.349, 0.05))
            self.expected_ = Pipeline([("features", features), ("scale", scale), ("model", ridge)])
            z[ok] = (resid - self.residual_center_) / self.residual_scale_
        self.context_ = FeaturePipeline(
            text="none",
            use_amount=True,
            use_category=True,
            categorical_encoding="ordinal",
            output="dense",
        ).fit(X)
        names = list(self.context_.get_feature_names_out())
        self.passthrough_index_ = np.array([names.index(c) for c in PASSTHROUGH])

        categories = _token(_column(X, "category"))
        payments = _token(_column(X, "payment_method"))
        pairs = pd.Series(categories + "|" + payments).value_counts()
        self.pair_counts_ = {str(k): int(v) for k, v in pairs.items()}
        per_category = pd.Series(categories).value_counts()
        self.category_counts_ = {str(k): int(v) for k, v in per_category.items()}
        self.n_payment_values_ = int(len(set(payments.tolist())) + 1)
        self.feature_names_out_ = np.array(FEATURE_NAMES, dtype=object)
        return self._assemble(np.clip(z, -_Z_CLIP, _Z_CLIP), categories, payments, X)

    def _assemble(
        self, z: np.ndarray, categories: np.ndarray, payments: np.ndarray, X: pd.DataFrame
    ) -> np.ndarray:
        rarity = self._rarity(categories, payments)
        context = self.context_.transform(X)[:, self.passthrough_index_]
        return np.column_stack([z, rarity, context]).astype(np.float64)

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_out_"):
            raise NotFittedError("AnomalyFeatures is not fitted; call fit(frame) first")

    def _rarity(self, categories: np.ndarray, payments: np.ndarray) -> np.ndarray:
        pair_count = pd.Series(categories + "|" + payments).map(self.pair_counts_)
        cat_count = pd.Series(categories).map(self.category_counts_)
        p = (pair_count.fillna(0).to_numpy() + 1.0) / (
            cat_count.fillna(0).to_numpy() + self.n_payment_values_
        )
        return -np.log(p)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        self._check_fitted()
        log_amount, ok = _log_amount(X)
        z = np.zeros(len(X))
        if self.expected_ is not None and ok.any():
            expected = self.expected_.predict(X[ok])
            z[ok] = (log_amount[ok] - expected - self.residual_center_) / self.residual_scale_
        categories = _token(_column(X, "category"))
        payments = _token(_column(X, "payment_method"))
        return self._assemble(np.clip(z, -_Z_CLIP, _Z_CLIP), categories, payments, X)

    def transform_one(self, record: Mapping[str, Any]) -> np.ndarray:
        """Features of one transaction dict, equal to ``transform(pd.DataFrame([record]))``.

        The serving path: the FeaturePipelines' own ``transform_one`` and no pandas.
        """
        self._check_fitted()
        amount = _amount_one(record.get("amount"))
        z = 0.0
        if math.isfinite(amount):
            expected = 0.0
            if self.expected_ is not None:
                row = self.expected_[0].transform_one(record)
                expected = float(self.expected_[-1].predict(self.expected_[1].transform(row))[0])
            log_amount = float(np.log1p(np.abs(np.float64(amount))))
            raw = (log_amount - expected - self.residual_center_) / self.residual_scale_
            z = min(max(raw, -_Z_CLIP), _Z_CLIP)
        category = _token_one(record.get("category"))
        payment = _token_one(record.get("payment_method"))
        pair = self.pair_counts_.get(f"{category}|{payment}", 0)
        rarity = -math.log(
            (pair + 1.0) / (self.category_counts_.get(category, 0) + self.n_payment_values_)
        )
        context = np.asarray(self.context_.transform_one(record))[0, self.passthrough_index_]
        return np.concatenate([[z, rarity], context]).astype(np.float64).reshape(1, -1)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        self._check_fitted()
        return self.feature_names_out_.copy()


class AnomalySpec(ModelSpec):
    """How unusual a transaction is; flags the top ``anomaly_alert_rate`` share."""

    name: ClassVar[str] = "anomaly"
    task: ClassVar[Literal["anomaly"]] = "anomaly"
    primary_metric: ClassVar[str] = "pr_auc"
    direction: ClassVar[Literal["max"]] = "max"
    description: ClassVar[str] = (
        "Scores how unusual a transaction is (higher = more unusual) without labels: amount "
        "far from what its description, merchant and category suggest, a payment method rare "
        "for its category, an unknown merchant at the weekend. Flags scores above the training "
        "quantile at the configured alert rate."
    )

    def select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Every transaction with a date (income and expenses)."""
        dates = pd.to_datetime(frame["date"], errors="coerce")
        return frame[dates.notna().to_numpy()]

    def fit(self, train: pd.DataFrame, seed: int) -> TrainedModel:
        train = self.select(train)
        if len(train) < 10:
            raise TrainingError(
                f"anomaly: {len(train)} dated transactions; provide at least 10 to learn from"
            )
        warnings: list[str] = []
        max_samples = min(2048, len(train))
        features = AnomalyFeatures()
        matrix = features.fit_transform(train)
        forest = IsolationForest(n_estimators=200, max_samples=max_samples, random_state=seed)
        forest.fit(matrix)
        pipeline = Pipeline([("features", features), ("model", forest)])
        if features.expected_ is None:
            warnings.append(
                "anomaly: fewer than two rows with an amount; amounts are not scored in context"
            )
        # the alert threshold: a seeded sample of training rows pins the quantile well enough
        rows = np.arange(len(train))
        if len(train) > THRESHOLD_SAMPLE:
            rows = np.random.default_rng(seed).choice(len(train), THRESHOLD_SAMPLE, replace=False)
        scores = -forest.score_samples(matrix[rows])
        threshold = float(np.quantile(scores, 1.0 - self.settings.anomaly_alert_rate))
        return TrainedModel(
            spec_name=self.name,
            state={"pipeline": pipeline, "threshold": threshold},
            params={
                "estimator": "IsolationForest",
                "n_estimators": 200,
                "max_samples": max_samples,
                "alert_rate": self.settings.anomaly_alert_rate,
                "threshold": threshold,
                "features": ",".join(FEATURE_NAMES),
                "training_rows": len(train),
                "seed": seed,
            },
            warnings=warnings,
        )

    def predict(self, model: TrainedModel, frame: pd.DataFrame) -> pd.DataFrame:
        """``score`` (higher = more unusual) and ``is_anomaly`` (score above the threshold)."""
        state = model.state
        if not isinstance(state, dict) or "pipeline" not in state:
            raise NotFittedError("anomaly: the model is not fitted; train it first")
        if len(frame) == 0:
            scores = np.zeros(0)
        else:
            scores = -np.asarray(state["pipeline"].score_samples(frame), dtype=np.float64)
        return pd.DataFrame(
            {"score": scores, "is_anomaly": scores > state["threshold"]}, index=frame.index
        )

    def _label_metrics(self, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        rate = self.settings.anomaly_alert_rate
        return {
            "pr_auc": metrics.pr_auc(labels, scores),
            "recall_at_alert_rate": metrics.recall_at_share(labels, scores, rate),
            "precision_at_alert_rate": metrics.precision_at_share(labels, scores, rate),
        }

    @staticmethod
    def _labels(frame: pd.DataFrame) -> np.ndarray | None:
        if "is_anomaly" not in frame.columns or len(frame) == 0:
            return None
        labels = frame["is_anomaly"]
        if labels.isna().any():
            return None
        return labels.astype(bool).to_numpy()

    def evaluate(self, model: TrainedModel, test: pd.DataFrame) -> dict[str, float]:
        """PR-AUC and recall/precision at the alert rate when ``is_anomaly`` labels exist.

        Without labels those are NaN (a warning is logged); ``flagged_share`` (the share of
        rows above the learned threshold) is always reported.
        """
        test = self.select(test)
        out = self.predict(model, test)
        labels = self._labels(test)
        scores = out["score"].to_numpy()
        if labels is None:
            logger.warning(
                "anomaly: the test rows carry no is_anomaly labels; label metrics are NaN"
            )
            result = {k: math.nan for k in self._label_metrics(np.zeros(0), np.zeros(0))}
        else:
            result = self._label_metrics(labels, scores)
            result["positive_rate"] = float(labels.mean())
        result["flagged_share"] = float(out["is_anomaly"].mean()) if len(out) else math.nan
        return result

    def baseline(self, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
        """Random scores (seeded with ``settings.seed``): PR-AUC ≈ the positive rate."""
        test = self.select(test)
        labels = self._labels(test)
        if labels is None:
            return {k: math.nan for k in self._label_metrics(np.zeros(0), np.zeros(0))}
        scores = np.random.default_rng(self.settings.seed).random(len(test))
        return self._label_metrics(labels, scores)

    def evaluation(
        self, model: TrainedModel, train: pd.DataFrame, test: pd.DataFrame
    ) -> Evaluation:
        """Model and random baseline; notes in ``report['warnings']`` when labels are absent."""
        evaluation = super().evaluation(model, train, test)
        if self._labels(self.select(test)) is None:
            evaluation.report["warnings"] = [
                "anomaly: no is_anomaly labels in the test rows; PR-AUC and recall at the "
                "alert rate cannot be measured (NaN)"
            ]
        evaluation.report["threshold"] = model.state["threshold"]
        return evaluation


SPEC = AnomalySpec

"""amount: predict an expense's amount (its absolute value, a positive number of currency units).

Amounts are multiplicative (category price level x merchant level x item x noise), so the model
learns ``log1p(|amount|)`` with a ridge regression on the shared FeaturePipeline's sparse
features (hashed description and reference text, one-hot category, reference, payment method,
status, date; never the amount itself): additive in log space, fast on sparse input, and
convertible to ONNX. ``expm1`` of the prediction is the median amount in context, which is what
minimises MAE under log-symmetric noise. The 80% interval is the 10th and 90th percentile of the
log residuals on held-out training rows (the latest tenth), or on the training rows themselves
when there are many more rows than features.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler

from titans.errors import NotFittedError, TrainingError
from titans.features import FeaturePipeline
from titans.models import metrics
from titans.models.base import ModelSpec, TrainedModel

#: central coverage of the prediction interval
INTERVAL_COVERAGE = 0.8
#: share of the (time-ordered) training rows held out to measure residuals for the interval
CALIBRATION_SHARE = 0.1
#: with at least this many training rows per feature, in-sample residuals are honest enough
ROWS_PER_FEATURE_IN_SAMPLE = 10
#: width of the hashed text block
N_TEXT_FEATURES = 2**12


def _is_expense(frame: pd.DataFrame) -> np.ndarray:
    kind = frame["type"].astype("string").str.strip().str.lower()
    return (kind == "expense").fillna(False).to_numpy(dtype=bool)


def target(frame: pd.DataFrame) -> np.ndarray:
    """The amount the model predicts: the absolute value of the signed amount."""
    return np.abs(pd.to_numeric(frame["amount"], errors="coerce").to_numpy(dtype=np.float64))


class AmountSpec(ModelSpec):
    """Expense amount (absolute value) from category, reference, description and date."""

    name: ClassVar[str] = "amount"
    task: ClassVar[Literal["regression"]] = "regression"
    primary_metric: ClassVar[str] = "mae"
    direction: ClassVar[Literal["min"]] = "min"
    description: ClassVar[str] = (
        "Predicts an expense's amount as a positive number (the absolute value of the signed "
        "export amount) from its category, reference, description, payment method and date."
    )

    def select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Expenses with a finite, non-zero amount."""
        y = target(frame)
        return frame[_is_expense(frame) & np.isfinite(y) & (y > 0)]

    def features(self) -> FeaturePipeline:
        return FeaturePipeline(
            text="hash",
            n_text_features=N_TEXT_FEATURES,
            use_amount=False,
            use_category=True,
            categorical_encoding="onehot",
            output="sparse",
        )

    def _fit_pipeline(
        self, train: pd.DataFrame, log_target: np.ndarray
    ) -> tuple[Pipeline, np.ndarray]:
        """The fitted pipeline and its in-sample predictions (text is hashed once)."""
        features, scale = self.features(), MaxAbsScaler()
        matrix = scale.fit_transform(features.fit_transform(train))
        ridge = Ridge(alpha=1.0, solver="lsqr", tol=1e-3).fit(matrix, log_target)
        pipeline = Pipeline([("features", features), ("scale", scale), ("model", ridge)])
        return pipeline, ridge.predict(matrix)

    def fit(self, train: pd.DataFrame, seed: int) -> TrainedModel:
        """Fit on expenses; ``seed`` is recorded (the ridge solver is deterministic)."""
        train = self.select(train)
        if len(train) < 2:
            raise TrainingError(
                f"amount: {len(train)} expense(s) with a non-zero amount; "
                "provide at least two to learn from"
            )
        train = train.sort_values("date", kind="stable")
        log_target = np.log1p(target(train))
        pipeline, fitted = self._fit_pipeline(train, log_target)
        n_features = int(pipeline[0].n_features_out_)
        warnings: list[str] = []
        n_cal = int(len(train) * CALIBRATION_SHARE)
        if len(train) >= ROWS_PER_FEATURE_IN_SAMPLE * n_features:
            resid = log_target - fitted
            interval_from = "training residuals"
        elif n_cal >= 20:
            early, _ = self._fit_pipeline(train.iloc[:-n_cal], log_target[:-n_cal])
            resid = log_target[-n_cal:] - early.predict(train.iloc[-n_cal:])
            interval_from = "held-out residuals"
        else:
            resid = log_target - fitted
            interval_from = "training residuals (too few rows to hold out)"
            warnings.append(
                f"amount: {len(train)} training rows are too few for an out-of-sample "
                "interval; lower/upper use training residuals and are likely too narrow"
            )
        alpha = (1.0 - INTERVAL_COVERAGE) / 2.0
        lo, hi = np.quantile(resid, [alpha, 1 - alpha])
        return TrainedModel(
            spec_name=self.name,
            state={"pipeline": pipeline, "log_interval": (float(lo), float(hi))},
            params={
                "estimator": "Ridge(log1p target)",
                "target": "abs(amount)",
                "interval_coverage": INTERVAL_COVERAGE,
                "interval_from": interval_from,
                "training_rows": len(train),
                "n_features": n_features,
                "seed": seed,
                **{f"features__{k}": v for k, v in pipeline[0].get_params().items()},
            },
            warnings=warnings,
        )

    def predict(self, model: TrainedModel, frame: pd.DataFrame) -> pd.DataFrame:
        """``prediction`` (positive amount) and an 80% interval ``lower``/``upper``."""
        state = model.state
        if not isinstance(state, dict) or "pipeline" not in state:
            raise NotFittedError("amount: the model is not fitted; train it first")
        if len(frame) == 0:
            log_pred = np.zeros(0)
        else:
            log_pred = np.asarray(state["pipeline"].predict(frame), dtype=np.float64)
        lo, hi = state["log_interval"]
        return pd.DataFrame(
            {
                "prediction": np.expm1(np.maximum(log_pred, 0.0)),
                "lower": np.expm1(np.maximum(log_pred + lo, 0.0)),
                "upper": np.expm1(np.maximum(log_pred + hi, 0.0)),
            },
            index=frame.index,
        )

    @staticmethod
    def _scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        return {
            "mae": metrics.mae(truth, pred),
            "r2": metrics.r2(truth, pred),
            "mape": metrics.mape(truth, pred),
        }

    def evaluate(self, model: TrainedModel, test: pd.DataFrame) -> dict[str, float]:
        test = self.select(test)
        out = self.predict(model, test)
        truth = target(test)
        scores = self._scores(truth, out["prediction"].to_numpy())
        inside = (truth >= out["lower"].to_numpy()) & (truth <= out["upper"].to_numpy())
        scores["interval_coverage"] = float(inside.mean()) if truth.size else math.nan
        scores["test_rows"] = float(truth.size)
        return scores

    def baseline(self, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
        """Per-category median amount of the training rows (overall median for unseen ones)."""
        train, test = self.select(train), self.select(test)
        if len(train) == 0 or len(test) == 0:
            return {"mae": math.nan, "r2": math.nan, "mape": math.nan}
        key_train = train["category"].astype("string").str.strip().str.lower().fillna("")
        key_test = test["category"].astype("string").str.strip().str.lower().fillna("")
        y_train = pd.Series(target(train), index=train.index)
        medians = y_train.groupby(key_train.to_numpy()).median()
        pred = key_test.map(medians).fillna(float(y_train.median())).to_numpy(dtype=np.float64)
        return self._scores(target(test), pred)


SPEC = AmountSpec

"""category: classify an expense into one of the 22 expense categories.

Features come from the shared FeaturePipeline (description text hashed into character n-grams,
reference, amount, date, payment method; never the category itself), scaled to [-1, 1]; the
estimator is a one-vs-rest logistic regression trained by SGD (balanced class weights, for
macro-F1), which is fast on sparse input, gives probabilities and converts to ONNX.
Categories with too few training examples are merged into ``other`` and reported, so a small
export still trains.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler

from titans.data.columns import EXPENSE_CATEGORIES
from titans.errors import NotFittedError, TrainingError
from titans.features import FeaturePipeline
from titans.models import metrics
from titans.models.base import Evaluation, ModelSpec, TrainedModel

#: the class rare categories are folded into
OTHER = "other"
#: SGD passes over the data scale down with its size: ~this many row updates per class
ROW_UPDATES = 500_000


def epochs(n_rows: int) -> int:
    """SGD epochs for ``n_rows`` training rows: 3 for big data, up to 30 for small.

    >>> epochs(150_000), epochs(20_000), epochs(100)
    (4, 25, 30)
    """
    return int(min(30, max(3, math.ceil(ROW_UPDATES / max(n_rows, 1)))))


def regularisation(n_rows: int) -> float:
    """SGD's L2 penalty: stronger on small data so a 100-row export gives sane probabilities.

    >>> regularisation(150_000), regularisation(100)
    (1e-06, 0.001)
    """
    return float(max(1e-6, 0.1 / max(n_rows, 1)))


def _is_expense(frame: pd.DataFrame) -> np.ndarray:
    kind = frame["type"].astype("string").str.strip().str.lower()
    return (kind == "expense").fillna(False).to_numpy(dtype=bool)


def _labels(frame: pd.DataFrame) -> pd.Series:
    return frame["category"].astype("string").str.strip().str.lower()


def merge_rare(labels: pd.Series, min_examples: int) -> tuple[dict[str, str], list[str]]:
    """Map each category with fewer than ``min_examples`` rows to ``other``.

    Returns the mapping (rare -> other) and a description per merged class, rarest first.

    >>> merge_rare(pd.Series(["food"] * 5 + ["rent"] * 2 + ["fuel"]), 3)
    ({'fuel': 'other', 'rent': 'other'}, ['fuel (1)', 'rent (2)'])
    """
    counts = labels.value_counts()
    rare = counts[(counts < min_examples) & (counts.index != OTHER)]
    rare = rare.sort_index().sort_values(kind="stable")
    mapping = {str(label): OTHER for label in rare.index}
    described = [f"{label} ({int(n)})" for label, n in rare.items()]
    return dict(sorted(mapping.items())), described


def apply_known_classes(labels: pd.Series, known: set[str]) -> np.ndarray:
    """Labels the model can represent; anything else (rare or never seen) becomes ``other``."""
    values = labels.fillna(OTHER).to_numpy(dtype=object)
    return np.where(np.isin(values, list(known)), values, OTHER).astype(object)


def _reference_key(frame: pd.DataFrame) -> pd.Series:
    return frame["reference"].astype("string").str.strip().str.lower().fillna("")


class CategorySpec(ModelSpec):
    """Expense category from description, reference, amount, date and payment method."""

    name: ClassVar[str] = "category"
    task: ClassVar[Literal["classification"]] = "classification"
    primary_metric: ClassVar[str] = "macro_f1"
    direction: ClassVar[Literal["max"]] = "max"
    description: ClassVar[str] = (
        "Classifies an expense into one of the 22 expense categories from its description, "
        "reference, amount, date and payment method."
    )

    def select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Expenses whose category is one of the 22 known ones."""
        known = _labels(frame).isin(EXPENSE_CATEGORIES).fillna(False).to_numpy(dtype=bool)
        return frame[_is_expense(frame) & known]

    def features(self) -> FeaturePipeline:
        return FeaturePipeline(
            text="hash",
            n_text_features=2**12,
            use_amount=True,
            use_category=False,
            categorical_encoding="onehot",
            output="sparse",
        )

    def _classes_after_merge(self, train: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        labels = _labels(train)
        mapping, merged = merge_rare(labels, self.settings.min_class_examples)
        return labels.replace(mapping).to_numpy(dtype=object), merged

    def fit(self, train: pd.DataFrame, seed: int) -> TrainedModel:
        train = self.select(train)
        if len(train) == 0:
            raise TrainingError(
                "category: no expense with a known category to learn from; "
                "check the Type and Category columns"
            )
        y, merged = self._classes_after_merge(train)
        warnings: list[str] = []
        if merged:
            warnings.append(
                f"category: {len(merged)} class(es) with fewer than "
                f"{self.settings.min_class_examples} training examples merged into "
                f"'{OTHER}': {', '.join(merged)}"
            )
        classes = np.unique(y)
        estimator: Any
        if classes.size < 2:
            warnings.append(
                f"category: only one class ({classes[0]}) left to learn; "
                "the model always predicts it"
            )
            estimator = DummyClassifier(strategy="most_frequent")
            name = "DummyClassifier"
        else:
            estimator = SGDClassifier(
                loss="log_loss",
                alpha=regularisation(len(train)),
                max_iter=epochs(len(train)),
                tol=None,
                class_weight="balanced",
                random_state=seed,
            )
            name = "SGDClassifier(log_loss)"
        pipeline = Pipeline(
            [("features", self.features()), ("scale", MaxAbsScaler()), ("model", estimator)]
        )
        pipeline.fit(train, y)
        return TrainedModel(
            spec_name=self.name,
            state={"pipeline": pipeline, "merged": merged},
            params={
                "estimator": name,
                "n_classes": int(classes.size),
                "min_class_examples": self.settings.min_class_examples,
                "merged_classes": len(merged),
                "training_rows": len(train),
                "epochs": epochs(len(train)),
                "alpha": regularisation(len(train)),
                "seed": seed,
                **{f"features__{k}": v for k, v in pipeline[0].get_params().items()},
            },
            warnings=warnings,
        )

    @staticmethod
    def _pipeline(model: TrainedModel) -> Pipeline:
        state = model.state
        if not isinstance(state, dict) or "pipeline" not in state:
            raise NotFittedError("category: the model is not fitted; train it first")
        pipeline: Pipeline = state["pipeline"]
        return pipeline

    def predict(self, model: TrainedModel, frame: pd.DataFrame) -> pd.DataFrame:
        """``prediction`` (category), ``probability`` (its probability), ``proba_<category>``."""
        pipeline = self._pipeline(model)
        classes = np.asarray(pipeline.classes_, dtype=object)
        if len(frame) == 0:
            proba = np.zeros((0, classes.size))
        else:
            proba = np.asarray(pipeline.predict_proba(frame), dtype=np.float64)
            # one-vs-rest normalisation divides by 0 if every sigmoid underflows: say "unsure"
            unsure = ~np.isfinite(proba).all(axis=1)
            proba[unsure] = 1.0 / classes.size
        best = proba.argmax(axis=1) if proba.size else np.zeros(0, dtype=np.int64)
        out = pd.DataFrame(
            {
                "prediction": classes[best],
                "probability": proba[np.arange(len(best)), best] if proba.size else [],
            },
            index=frame.index,
        )
        probas = pd.DataFrame(proba, columns=[f"proba_{c}" for c in classes], index=frame.index)
        return pd.concat([out, probas], axis=1)

    def _truth_and_prediction(
        self, model: TrainedModel, test: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray]:
        test = self.select(test)
        known = set(self._pipeline(model).classes_)
        truth = apply_known_classes(_labels(test), known)
        pred = self.predict(model, test)["prediction"].to_numpy(dtype=object)
        return truth, pred

    @staticmethod
    def _scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        return {
            "macro_f1": metrics.macro_f1(truth, pred),
            "accuracy": metrics.accuracy(truth, pred),
            "test_rows": float(truth.size),
        }

    def evaluate(self, model: TrainedModel, test: pd.DataFrame) -> dict[str, float]:
        """Macro-F1 and accuracy; test labels the model cannot represent count as ``other``."""
        return self._scores(*self._truth_and_prediction(model, test))

    def baseline(self, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
        """Majority class and most frequent category per reference; the stronger one leads.

        Returns ``macro_f1``/``accuracy`` of the stronger baseline (by macro-F1) and
        ``majority_*``/``reference_*`` for both.
        """
        train, test = self.select(train), self.select(test)
        if len(train) == 0 or len(test) == 0:
            return {"macro_f1": math.nan, "accuracy": math.nan}
        y_train, _ = self._classes_after_merge(train)
        truth = apply_known_classes(_labels(test), set(y_train))
        counts = pd.Series(y_train).value_counts()
        majority = counts[counts == counts.max()].sort_index().index[0]
        majority_pred = np.full(truth.size, majority, dtype=object)

        pairs = pd.DataFrame({"ref": _reference_key(train).to_numpy(), "cat": y_train})
        top = (
            pairs.value_counts()
            .rename("n")
            .reset_index()
            .sort_values(["ref", "n", "cat"], ascending=[True, False, True], kind="stable")
            .drop_duplicates("ref")
            .set_index("ref")["cat"]
        )
        ref_pred = _reference_key(test).map(top).fillna(majority).to_numpy(dtype=object)

        result = {
            "majority_macro_f1": metrics.macro_f1(truth, majority_pred),
            "majority_accuracy": metrics.accuracy(truth, majority_pred),
            "reference_macro_f1": metrics.macro_f1(truth, ref_pred),
            "reference_accuracy": metrics.accuracy(truth, ref_pred),
        }
        best = (
            "reference"
            if result["reference_macro_f1"] >= result["majority_macro_f1"]
            else "majority"
        )
        result["macro_f1"] = result[f"{best}_macro_f1"]
        result["accuracy"] = result[f"{best}_accuracy"]
        return result

    def evaluation(
        self, model: TrainedModel, train: pd.DataFrame, test: pd.DataFrame
    ) -> Evaluation:
        """Metrics, both baselines and a per-class report (precision, recall, F1, support)."""
        truth, pred = self._truth_and_prediction(model, test)
        baseline = self.baseline(train, test)
        stronger = (
            "reference"
            if baseline.get("reference_macro_f1", math.nan) == baseline["macro_f1"]
            else "majority"
        )
        return Evaluation(
            metrics=self._scores(truth, pred),
            baseline_metrics=baseline,
            primary_metric=self.primary_metric,
            direction=self.direction,
            report={
                "baseline": f"{stronger} (the stronger of: majority class, "
                "most frequent category per reference)",
                "per_class": metrics.per_class_report(truth, pred),
                "merged_into_other": list(model.state.get("merged", [])),
            },
        )


SPEC = CategorySpec

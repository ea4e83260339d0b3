"""ModelSpec: what every model declares (name, task, metric, estimator, evaluation, baseline)."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from titans.config import MODEL_KEYS, Settings
from titans.errors import InputError, TrainingError

Direction = Literal["max", "min"]


@dataclass
class TrainedModel:
    """A fitted model with everything needed to predict on RAW transactions.

    ``state`` is whatever the spec needs (a fitted sklearn Pipeline, a dict of estimators, ...);
    it must be picklable. ``warnings`` records what could not be learned (merged classes, ...).
    """

    spec_name: str
    state: Any
    params: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def spec(self) -> ModelSpec:
        return get_spec(self.spec_name)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Predictions for a typed transactions frame, one output row per input row."""
        return self.spec.predict(self, frame)


@dataclass
class Evaluation:
    """Metrics of a model and of its baseline on the same holdout, and the margin between."""

    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    primary_metric: str
    direction: Direction
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return float(self.metrics[self.primary_metric])

    @property
    def baseline_score(self) -> float:
        return float(self.baseline_metrics[self.primary_metric])

    @property
    def margin(self) -> float:
        """How much better than the baseline, positive when better, in the metric's units."""
        diff = self.score - self.baseline_score
        return diff if self.direction == "max" else -diff

    @property
    def beats_baseline(self) -> bool:
        return self.margin > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "primary_metric": self.primary_metric,
            "direction": self.direction,
            "metrics": self.metrics,
            "baseline_metrics": self.baseline_metrics,
            "margin": self.margin,
            "beats_baseline": self.beats_baseline,
            "report": self.report,
        }


class ModelSpec(ABC):
    """One model of the platform. Subclasses set the class attributes and the methods.

    The frames passed in are typed transactions frames (see titans.data); a spec selects the
    rows it learns from (e.g. expenses only) in :meth:`select`.
    """

    name: ClassVar[str]
    task: ClassVar[Literal["classification", "regression", "anomaly", "forecast"]]
    primary_metric: ClassVar[str]
    direction: ClassVar[Direction]
    description: ClassVar[str] = ""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()

    def select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows this model learns from and is evaluated on (default: all)."""
        return frame

    def split(
        self, frame: pd.DataFrame, test_fraction: float = 0.2
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Time split: train on the past, test on the latest period (never random)."""
        frame = self.select(frame)
        if len(frame) < 10:
            raise TrainingError(
                f"{self.name}: only {len(frame)} usable rows; provide at least 10 transactions"
            )
        ordered = frame.sort_values("date", kind="stable")
        dates = ordered["date"].to_numpy()
        cut_date = np.quantile(dates.astype("datetime64[D]").astype(np.int64), 1 - test_fraction)
        cut = np.datetime64(int(cut_date), "D")
        train = ordered[ordered["date"].to_numpy().astype("datetime64[D]") < cut]
        test = ordered[ordered["date"].to_numpy().astype("datetime64[D]") >= cut]
        if len(train) == 0 or len(test) == 0:
            n_test = max(1, round(len(ordered) * test_fraction))
            train, test = ordered.iloc[:-n_test], ordered.iloc[-n_test:]
        return train, test

    @abstractmethod
    def fit(self, train: pd.DataFrame, seed: int) -> TrainedModel:
        """Fit on the training rows; record what could not be learned in warnings."""

    @abstractmethod
    def predict(self, model: TrainedModel, frame: pd.DataFrame) -> pd.DataFrame:
        """Predict for a typed transactions frame (raw rows; never raises on unseen values)."""

    @abstractmethod
    def evaluate(self, model: TrainedModel, test: pd.DataFrame) -> dict[str, float]:
        """Metrics of the model on held-out rows (must include ``primary_metric``)."""

    @abstractmethod
    def baseline(self, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
        """The trivial baseline's metrics on the same held-out rows."""

    def evaluation(
        self, model: TrainedModel, train: pd.DataFrame, test: pd.DataFrame
    ) -> Evaluation:
        """Model and baseline on the same holdout."""
        return Evaluation(
            metrics=self.evaluate(model, test),
            baseline_metrics=self.baseline(train, test),
            primary_metric=self.primary_metric,
            direction=self.direction,
        )

    def input_example(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A few raw rows to store with the logged model."""
        return self.select(frame).head(3)


_SPEC_MODULES = {key: f"titans.models.{key}" for key in MODEL_KEYS}


def model_names() -> tuple[str, ...]:
    """The four model keys, in training order."""
    return MODEL_KEYS


def get_spec(name: str, settings: Settings | None = None) -> ModelSpec:
    """The spec registered under ``name``; unknown names list the known ones."""
    if name not in _SPEC_MODULES:
        raise InputError(f"unknown model {name!r}; choose one of: {', '.join(_SPEC_MODULES)}")
    module = importlib.import_module(_SPEC_MODULES[name])
    spec_cls: type[ModelSpec] = module.SPEC
    return spec_cls(settings)

"""Soft-voting / averaging ensembles of registered versions of one model, as one TrainedModel.

Category: the weighted mean of the members' class probabilities over the union of their
classes (a class a member never learned gets probability 0 from it). Amount: the weighted mean
of the members' log-amount predictions; the 80 % interval is the mean of their log-residual
intervals (an approximation: residuals of an average are narrower than the average of
residuals, so the interval errs on the wide side). The anomaly and cashflow models have no
averaging rule here (their thresholds and forecasts do not average meaningfully).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from titans.models.base import TrainedModel
from titans.optimization.onnx_convert import OptimizationError

ENSEMBLE_MODELS = ("category", "amount")


@dataclass
class AveragingPipeline:
    """Members' pipelines averaged: ``predict_proba`` (soft voting) or ``predict``."""

    members: tuple[Any, ...]
    weights: tuple[float, ...]
    kind: Literal["classifier", "regressor"]
    classes: tuple[str, ...] = ()
    flavour: str = "sklearn"

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)

    def _weights(self) -> np.ndarray:
        w = np.asarray(self.weights, dtype=np.float64)
        return w / w.sum()

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        position = {c: i for i, c in enumerate(self.classes)}
        total = np.zeros((len(frame), len(self.classes)))
        for member, weight in zip(self.members, self._weights(), strict=True):
            proba = np.asarray(member.predict_proba(frame), dtype=np.float64)
            # the members' own "unsure" rule: a row whose probabilities are not finite is uniform
            unsure = ~np.isfinite(proba).all(axis=1)
            proba[unsure] = 1.0 / proba.shape[1]
            columns = [position[str(c)] for c in member.classes_]
            total[:, columns] += weight * proba
        return total

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.kind == "classifier":
            return self.classes_[self.predict_proba(frame).argmax(axis=1)]
        stacked = np.vstack([np.asarray(m.predict(frame), dtype=np.float64) for m in self.members])
        return np.asarray(self._weights() @ stacked)


def build_ensemble(
    members: Sequence[TrainedModel], weights: Sequence[float] | None = None
) -> TrainedModel:
    """One TrainedModel averaging ``members`` (all of the same model)."""
    if len(members) < 2:
        raise OptimizationError("an ensemble needs at least two model versions; pass two or more")
    names = sorted({m.spec_name for m in members})
    if len(names) != 1:
        raise OptimizationError(
            f"ensemble members must be versions of one model, got {', '.join(names)}"
        )
    key = names[0]
    if key not in ENSEMBLE_MODELS:
        raise OptimizationError(
            f"no averaging rule for the {key} model; ensembles cover {', '.join(ENSEMBLE_MODELS)}"
        )
    weights = tuple(float(w) for w in (weights or [1.0] * len(members)))
    if len(weights) != len(members) or min(weights) <= 0:
        raise OptimizationError(
            f"give one positive weight per member ({len(members)} members, weights {weights})"
        )
    pipelines = tuple(m.state["pipeline"] for m in members)
    flavours = sorted({getattr(p, "flavour", "sklearn") for p in pipelines})
    params: dict[str, Any] = {
        "estimator": f"ensemble of {len(members)}",
        "weights": ",".join(map(str, weights)),
    }
    if key == "category":
        classes = tuple(sorted({str(c) for p in pipelines for c in p.classes_}))
        merged = sorted({m for member in members for m in member.state.get("merged", [])})
        pipeline = AveragingPipeline(pipelines, weights, "classifier", classes, "+".join(flavours))
        state: dict[str, Any] = {"pipeline": pipeline, "merged": merged}
        params["n_classes"] = len(classes)
    else:
        intervals = np.array([m.state["log_interval"] for m in members], dtype=np.float64)
        lo, hi = (float(v) for v in intervals.mean(axis=0))
        pipeline = AveragingPipeline(pipelines, weights, "regressor", (), "+".join(flavours))
        state = {"pipeline": pipeline, "log_interval": (lo, hi)}
    warnings = [w for m in members for w in m.warnings]
    return TrainedModel(spec_name=key, state=state, params=params, warnings=warnings)

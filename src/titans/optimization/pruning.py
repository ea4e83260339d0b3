"""Prune a tree ensemble: the fewest trees whose primary metric stays within a tolerance.

Covers the anomaly model's IsolationForest (the platform's one tree ensemble that converts to
ONNX; the cashflow model's recursive forecast does not convert). Trees are kept in training
order, so a pruned forest is the forest sklearn would have grown with fewer estimators. Depth
is not pruned: an isolation tree's depth is its score.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline

from titans.models.base import TrainedModel

#: tree counts tried, smallest first (capped at the forest's own size)
DEFAULT_TREE_COUNTS: tuple[int, ...] = (10, 25, 50, 100, 150)


@dataclass
class PruningResult:
    """What pruning tried and kept; ``kept_trees == original_trees`` when nothing was cut."""

    original_trees: int
    kept_trees: int
    metric: str
    original_score: float
    kept_score: float
    tolerance: float
    tried: dict[int, float] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_trees": self.original_trees,
            "kept_trees": self.kept_trees,
            "metric": self.metric,
            "original_score": self.original_score,
            "kept_score": self.kept_score,
            "tolerance": self.tolerance,
            "tried": {str(k): v for k, v in self.tried.items()},
            "note": self.note,
        }


def first_trees(forest: IsolationForest, n_trees: int) -> IsolationForest:
    """A copy of ``forest`` with only its first ``n_trees`` trees (the fitted ones, not refit)."""
    pruned = copy.copy(forest)
    pruned.estimators_ = forest.estimators_[:n_trees]
    pruned.estimators_features_ = forest.estimators_features_[:n_trees]
    for name in ("_seeds", "_decision_path_lengths", "_average_path_length_per_tree"):
        values = getattr(forest, name, None)
        if values is not None:
            setattr(pruned, name, values[:n_trees])
    pruned.n_estimators = n_trees
    return pruned


def _with_forest(trained: TrainedModel, forest: IsolationForest) -> TrainedModel:
    pipeline: Pipeline = trained.state["pipeline"]
    steps = [*pipeline.steps[:-1], (pipeline.steps[-1][0], forest)]
    return TrainedModel(
        spec_name=trained.spec_name,
        state={**trained.state, "pipeline": Pipeline(steps)},
        params={**trained.params, "n_estimators": len(forest.estimators_)},
        warnings=list(trained.warnings),
    )


def isolation_forest_of(trained: TrainedModel) -> IsolationForest | None:
    """The model's IsolationForest when its pipeline ends in one."""
    pipeline = trained.state.get("pipeline") if isinstance(trained.state, dict) else None
    if isinstance(pipeline, Pipeline) and isinstance(pipeline.steps[-1][1], IsolationForest):
        return pipeline.steps[-1][1]
    return None


def prune_trees(
    trained: TrainedModel,
    holdout: pd.DataFrame,
    tolerance: float,
    tree_counts: tuple[int, ...] = DEFAULT_TREE_COUNTS,
) -> tuple[TrainedModel, PruningResult]:
    """The model with the fewest trees whose primary metric on ``holdout`` is within
    ``tolerance`` (metric units) of the full forest's; the model itself when nothing qualifies
    or the metric cannot be computed (no labels in the holdout)."""
    forest = isolation_forest_of(trained)
    spec = trained.spec
    metric = spec.primary_metric
    if forest is None:
        return trained, PruningResult(0, 0, metric, math.nan, math.nan, tolerance, note="no forest")
    total = len(forest.estimators_)
    full = float(spec.evaluate(trained, holdout)[metric])
    result = PruningResult(total, total, metric, full, full, tolerance)
    if not math.isfinite(full):
        result.note = f"{metric} is undefined on the holdout (no labels): not pruned"
        return trained, result
    for n_trees in sorted({n for n in tree_counts if 0 < n < total}):
        candidate = _with_forest(trained, first_trees(forest, n_trees))
        score = float(spec.evaluate(candidate, holdout)[metric])
        result.tried[n_trees] = score
        loss = full - score if spec.direction == "max" else score - full
        if math.isfinite(score) and loss <= tolerance:
            result.kept_trees, result.kept_score = n_trees, score
            result.note = f"{n_trees} of {total} trees keep {metric} within {tolerance:g}"
            return candidate, result
    result.note = f"no smaller forest keeps {metric} within {tolerance:g}: all {total} kept"
    return trained, result

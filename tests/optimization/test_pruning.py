"""Tree pruning of the anomaly model's IsolationForest: fewest trees within the tolerance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest

from titans.config import Settings
from titans.data.synth import generate
from titans.models.base import TrainedModel, get_spec
from titans.optimization.pruning import first_trees, isolation_forest_of, prune_trees

SEED = 3


@pytest.fixture(scope="module")
def anomaly() -> tuple[TrainedModel, pd.DataFrame]:
    spec = get_spec("anomaly", Settings(anomaly_alert_rate=0.01))
    train, test = spec.split(generate(1_500, seed=SEED))
    return spec.fit(train, SEED), test


def test_the_first_trees_of_a_forest_are_the_forest_grown_with_fewer_trees() -> None:
    x = np.random.default_rng(0).normal(size=(300, 4))
    full = IsolationForest(n_estimators=50, random_state=5).fit(x)
    small = IsolationForest(n_estimators=10, random_state=5).fit(x)
    np.testing.assert_array_equal(first_trees(full, 10).score_samples(x), small.score_samples(x))
    assert len(full.estimators_) == 50  # the source forest is untouched


def test_a_loose_tolerance_keeps_the_fewest_trees_tried(
    anomaly: tuple[TrainedModel, pd.DataFrame],
) -> None:
    model, holdout = anomaly
    pruned, result = prune_trees(model, holdout, tolerance=1.0, tree_counts=(10, 50))
    forest = isolation_forest_of(pruned)
    assert forest is not None and len(forest.estimators_) == 10
    assert (result.original_trees, result.kept_trees) == (200, 10)
    assert result.kept_score == pytest.approx(pruned.spec.evaluate(pruned, holdout)["pr_auc"])
    assert len(isolation_forest_of(model).estimators_) == 200  # type: ignore[union-attr]
    # the pruned model still predicts through its spec, threshold unchanged
    out = pruned.predict(holdout)
    assert list(out.columns) == ["score", "is_anomaly"]
    assert pruned.state["threshold"] == model.state["threshold"]


def test_a_tolerance_nothing_meets_keeps_every_tree(
    anomaly: tuple[TrainedModel, pd.DataFrame],
) -> None:
    model, holdout = anomaly
    kept, result = prune_trees(model, holdout, tolerance=-1.0, tree_counts=(10, 50))
    assert kept is model
    assert result.kept_trees == result.original_trees == 200
    assert set(result.tried) == {10, 50}
    assert "all 200 kept" in result.note


def test_a_holdout_without_labels_is_not_pruned(
    anomaly: tuple[TrainedModel, pd.DataFrame],
) -> None:
    model, holdout = anomaly
    kept, result = prune_trees(model, holdout.drop(columns=["is_anomaly"]), tolerance=1.0)
    assert kept is model
    assert "not pruned" in result.note

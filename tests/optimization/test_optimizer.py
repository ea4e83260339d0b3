"""ModelOptimizer on a real MLflow registry: ONNX versions that agree with their source,
lineage tags, honest failures that leave the registry untouched, ensembles, benchmarks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import Pipeline

from titans.config import Settings
from titans.models.base import TrainedModel
from titans.models.fast import fast_predictor
from titans.models.inputs import typed_frame
from titans.models.pyfunc import load_trained
from titans.models.train import load_holdout
from titans.optimization import ModelOptimizer, OptimizationError
from titans.optimization.lineage import load_source, log_derived, register_derived
from titans.optimization.measure import request_records
from titans.optimization.onnx_model import OnnxPipeline
from titans.serving.model_store import flavour_of


def _client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def _versions(settings: Settings, name: str) -> list[str]:
    found = _client(settings).search_model_versions(f"name = '{name}'")
    return sorted((str(v.version) for v in found), key=int)


def _holdout_of(settings: Settings, name: str, version: str) -> pd.DataFrame:
    run_id = _client(settings).get_model_version(name, version).run_id
    return load_holdout(str(run_id), settings)


def _assert_compiled_path_matches_batch(model: TrainedModel, rows: pd.DataFrame) -> None:
    """The ONNX version's single-row path answers each row as its batch path does."""
    fast = fast_predictor(model)
    assert fast is not None
    for record in request_records(rows):
        batch = model.predict(typed_frame(pd.DataFrame([record]))).iloc[0].to_dict()
        single = fast.predict_one(record)
        assert list(single) == list(batch)
        for column, value in batch.items():
            assert single[column] == pytest.approx(value, rel=1e-6, abs=1e-9), column


def test_category_onnx_version_agrees_with_its_source_and_records_lineage(
    opt_settings: Settings,
) -> None:
    optimizer = ModelOptimizer(opt_settings)
    uri = optimizer.optimize_model_size("models:/titans-category/1")
    assert uri == "models:/titans-category/3"

    onnx_model, source = load_trained(uri), load_trained("models:/titans-category/1")
    assert isinstance(onnx_model.state["pipeline"], OnnxPipeline)
    assert flavour_of(onnx_model) == "onnxruntime"
    holdout = _holdout_of(opt_settings, "titans-category", "1")
    rows = source.spec.select(holdout)
    assert len(rows) > 200
    ours, theirs = onnx_model.predict(rows), source.predict(rows)
    agreement = float((ours["prediction"].to_numpy() == theirs["prediction"].to_numpy()).mean())
    assert agreement >= 0.995
    proba = [c for c in theirs.columns if c.startswith("proba_")]
    assert list(ours.columns) == list(theirs.columns)
    # float16 weights and float32 arithmetic: probabilities within 1e-2 of the source's
    assert np.abs(ours[proba].to_numpy() - theirs[proba].to_numpy()).max() < 1e-2

    tags = _client(opt_settings).get_model_version("titans-category", "3").tags
    assert tags["titans.optimization.source"] == "models:/titans-category/1"
    assert tags["titans.optimization.kind"] == "onnx"
    assert tags["titans.optimization.precision"] == "float16 weights"
    assert int(tags["titans.optimization.size_delta_bytes"]) < 0
    assert int(tags["titans.optimization.size_bytes"]) < int(
        tags["titans.optimization.source_size_bytes"]
    )
    assert float(tags["titans.optimization.agreement"]) == pytest.approx(agreement)
    assert math.isfinite(float(tags["titans.optimization.metric_delta"]))
    # the version carries the source's data lineage, like a trained version
    source_tags = _client(opt_settings).get_model_version("titans-category", "1").tags
    assert tags["titans.data_version"] == source_tags["titans.data_version"]
    assert optimizer.last_report["agreement"]["label_agreement"] == pytest.approx(agreement)


def test_amount_onnx_version_stays_within_the_regression_tolerance(
    opt_settings: Settings,
) -> None:
    optimizer = ModelOptimizer(opt_settings, regression_tolerance=1e-3)
    uri = optimizer.optimize_model_size("models:/titans-amount/1")
    onnx_model, source = load_trained(uri), load_trained("models:/titans-amount/1")
    rows = source.spec.select(_holdout_of(opt_settings, "titans-amount", "1"))
    ours, theirs = onnx_model.predict(rows), source.predict(rows)
    for column in ("prediction", "lower", "upper"):
        ref = theirs[column].to_numpy()
        assert np.all(np.abs(ours[column].to_numpy() - ref) <= 1e-3 * np.maximum(np.abs(ref), 1))
    _assert_compiled_path_matches_batch(onnx_model, rows.head(20))
    tags = _client(opt_settings).get_model_version("titans-amount", "2").tags
    # LinearRegressor keeps its coefficients as attributes: no float16, and it says so
    assert tags["titans.optimization.precision"] == "float32"
    assert "float16: no large float initializer" in optimizer.last_report["notes"][0]


def test_anomaly_onnx_version_is_a_pruned_forest_that_agrees_with_its_sklearn_twin(
    opt_settings: Settings,
) -> None:
    optimizer = ModelOptimizer(opt_settings, prune_tolerance=1.0, tree_counts=(10,))
    uri = optimizer.optimize_model_size("models:/titans-anomaly/1")
    tags = _client(opt_settings).get_model_version("titans-anomaly", "2").tags
    assert tags["titans.optimization.trees"] == "10/200"
    assert "titans.optimization.metric.pr_auc" in tags

    from titans.optimization.pruning import first_trees, isolation_forest_of

    source = load_trained("models:/titans-anomaly/1")
    forest = isolation_forest_of(source)
    assert forest is not None
    pipeline = source.state["pipeline"]
    twin = TrainedModel(
        spec_name="anomaly",
        state={
            **source.state,
            "pipeline": Pipeline([pipeline.steps[0], ("model", first_trees(forest, 10))]),
        },
    )
    rows = source.spec.select(_holdout_of(opt_settings, "titans-anomaly", "1"))
    ours, theirs = load_trained(uri).predict(rows), twin.predict(rows)
    assert float((ours["is_anomaly"] == theirs["is_anomaly"]).mean()) >= 0.995
    np.testing.assert_allclose(ours["score"], theirs["score"], rtol=1e-3, atol=0)
    _assert_compiled_path_matches_batch(load_trained(uri), rows.head(20))


@pytest.mark.filterwarnings("ignore:self.within_class_std_dev_:UserWarning")
def test_a_step_without_a_converter_is_a_clear_error_and_registers_nothing(
    opt_settings: Settings,
) -> None:
    source = load_source("models:/titans-category/1", opt_settings)
    features, scaler, _ = (step for _, step in source.trained.state["pipeline"].steps)
    rows = source.trained.spec.select(source.holdout)
    matrix = scaler.transform(features.transform(rows))
    centroid = NearestCentroid().fit(matrix, rows["category"].astype(str).to_numpy())
    unconvertible = TrainedModel(
        spec_name="category",
        state={
            "pipeline": Pipeline([("features", features), ("scale", scaler), ("model", centroid)]),
            "merged": [],
        },
    )
    logged, _ = log_derived(
        source, unconvertible, settings=opt_settings, run_name="centroid", tags={}, metrics={}
    )
    version = register_derived(
        logged, source, settings=opt_settings, description="centroid", tags={}
    )
    before = _versions(opt_settings, "titans-category")

    with pytest.raises(OptimizationError) as raised:
        ModelOptimizer(opt_settings).optimize_model_size(f"models:/titans-category/{version}")
    message = str(raised.value)
    assert "NearestCentroid" in message and "no converter" in message
    assert "registry is unchanged" in message and "\n" not in message
    assert _versions(opt_settings, "titans-category") == before


def test_an_onnx_version_is_not_converted_again(opt_settings: Settings) -> None:
    optimizer = ModelOptimizer(opt_settings)
    uri = optimizer.optimize_model_size("models:/titans-category/1")
    before = _versions(opt_settings, "titans-category")
    with pytest.raises(OptimizationError, match="already runs on onnxruntime"):
        optimizer.optimize_model_size(uri)
    assert _versions(opt_settings, "titans-category") == before


def test_speed_version_records_its_session_tuning_and_measured_speedup(
    opt_settings: Settings,
) -> None:
    optimizer = ModelOptimizer(opt_settings, latency_rows=50)
    uri = optimizer.optimize_inference_speed("models:/titans-category/1")
    tuned = load_trained(uri).state["pipeline"]
    assert isinstance(tuned, OnnxPipeline)
    assert tuned.tuning.intra_op_threads >= 1
    tags = _client(opt_settings).get_model_version("titans-category", uri.rsplit("/", 1)[1]).tags
    assert tags["titans.optimization.kind"] == "onnx-speed"
    assert tags["titans.optimization.tuning"] == tuned.tuning.describe()
    assert float(tags["titans.optimization.speedup_p50"]) > 0
    assert len(optimizer.last_report["trials"]) >= 3


def test_ensemble_averages_its_members_and_is_validated_before_registering(
    opt_settings: Settings,
) -> None:
    optimizer = ModelOptimizer(opt_settings)
    uri = optimizer.create_model_ensemble(
        ["models:/titans-category/1", "models:/titans-category/2"]
    )
    version = uri.rsplit("/", 1)[1]
    assert optimizer.last_report["validation"]["passed"] is True
    tags = _client(opt_settings).get_model_version("titans-category", version).tags
    assert tags["titans.optimization.kind"] == "ensemble"
    assert tags["validation_status"] == "passed"

    ensemble = load_trained(uri)
    members = [load_trained(f"models:/titans-category/{v}") for v in ("1", "2")]
    rows = typed_frame(_holdout_of(opt_settings, "titans-category", "1").head(30))
    rows = ensemble.spec.select(rows)
    got = ensemble.predict(rows)
    outs = [m.predict(rows) for m in members]
    for column in [c for c in got.columns if c.startswith("proba_")]:
        expected = np.mean([o[column].to_numpy() if column in o else 0.0 for o in outs], axis=0)
        np.testing.assert_allclose(got[column].to_numpy(), expected, rtol=1e-12)


def test_ensemble_of_different_models_is_refused(opt_settings: Settings) -> None:
    with pytest.raises(OptimizationError, match="versions of one model"):
        ModelOptimizer(opt_settings).create_model_ensemble(
            ["models:/titans-category/1", "models:/titans-amount/1"]
        )


def test_benchmark_reports_size_latency_throughput_and_metric_delta(
    opt_settings: Settings,
) -> None:
    optimizer = ModelOptimizer(opt_settings, latency_rows=30)
    uri = optimizer.optimize_model_size("models:/titans-category/1")
    result = optimizer.benchmark_model_performance(uri)
    assert result["flavour"] == "onnxruntime"
    assert result["single_row_path"] == "compiled"
    assert result["size_bytes"] > result["model_file_bytes"] > 0
    for key in ("load_seconds", "single_row_p50_us", "single_row_p99_us"):
        assert result[key] > 0
    assert result["single_row_p99_us"] >= result["single_row_p50_us"]
    assert result["batch_1000_rows_per_s"] > 0
    assert result["source_uri"] == "models:/titans-category/1"
    assert result["metric_delta"] == pytest.approx(
        result["metrics"]["macro_f1"] - result["source_metric"]
    )
    plain = optimizer.benchmark_model_performance("models:/titans-category/1")
    assert plain["flavour"] == "sklearn" and plain["metric_delta"] is None

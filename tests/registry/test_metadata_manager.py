"""ModelMetadataManager on a real trained model: lineage, experiment tags, dependencies."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import sklearn
from mlflow import MlflowClient
from typer.testing import CliRunner

from titans.cli import _register_groups, app
from titans.config import Settings
from titans.data.synth import generate
from titans.data.versions import build_manifest, data_version
from titans.errors import ExperimentNotFoundError, InputError, ModelNotFoundError
from titans.models.train import TrainingResult, train_models
from titans.registry import ModelMetadataManager, ModelRegistryManager

NAME = "titans-amount"
FEATURES = ["description", "reference", "category", "payment_method", "date"]

runner = CliRunner()
_register_groups()


@dataclass
class Trained:
    settings: Settings
    frame: pd.DataFrame
    result: TrainingResult


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Version 1 trained on a generated ledger, and version 2: a retrain of the same run."""
    settings = Settings(home=tmp_path_factory.mktemp("metadata-home"))
    frame = generate(3_000, seed=5)
    (result,) = train_models(frame, models=["amount"], seed=5, settings=settings)
    # version 2: the same artifacts registered again, tagged from the run like a retrain
    ModelRegistryManager(settings).register_model(result.model_uri, NAME)
    return Trained(settings, frame, result)


@pytest.fixture
def manager(trained: Trained) -> ModelMetadataManager:
    return ModelMetadataManager(trained.settings)


def _tags(settings: Settings, version: str) -> dict[str, str]:
    return dict(MlflowClient(settings.tracking_uri).get_model_version(NAME, version).tags)


def test_lineage_from_a_frame_records_data_version_manifest_and_features(
    manager: ModelMetadataManager, trained: Trained
) -> None:
    record = manager.track_model_lineage(NAME, 1, trained.frame, FEATURES)
    expected = data_version(trained.frame)
    assert record["data_version"] == expected == trained.result.data_version
    assert record["features"] == FEATURES and record["parent_version"] is None
    manifest_file = trained.settings.home_dir / "data" / "versions" / f"{expected}.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    assert manifest["rows"] == len(trained.frame)
    tags = _tags(trained.settings, "1")
    assert tags["titans.data_version"] == expected
    assert tags["titans.features"] == ",".join(FEATURES)
    assert tags["titans.feature_count"] == "5"
    artifact = tags["titans.lineage"]
    local = mlflow.artifacts.download_artifacts(artifact_uri=artifact)
    assert json.loads(Path(local).read_text(encoding="utf-8"))["data_version"] == expected


def test_lineage_chain_follows_parents_back_to_the_raw_data(
    manager: ModelMetadataManager, trained: Trained
) -> None:
    manager.track_model_lineage(NAME, 1, trained.frame, FEATURES)
    record = manager.track_model_lineage(
        NAME, 2, trained.result.data_version, FEATURES, parent_version=1
    )
    assert record["parent_version"] == "1"
    assert record["data_manifest"]["rows"] == len(trained.frame)  # found under data/versions
    chain = manager.lineage_chain(NAME, 2)
    assert [n["version"] for n in chain] == ["2", "1"]
    assert chain[0]["parent_version"] == "1" and chain[1]["parent_version"] is None
    assert chain[-1]["data_manifest"]["version"] == trained.result.data_version

    shown = runner.invoke(
        app, ["registry", "lineage", NAME, "2"], env={"TITANS_HOME": str(trained.settings.home)}
    )
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "titans-amount v2" in text and "↳ parent titans-amount v1" in text
    assert f"data {trained.result.data_version}: 3,000 rows" in text


def test_lineage_accepts_a_manifest_and_refuses_bad_input(
    manager: ModelMetadataManager, trained: Trained
) -> None:
    manifest = build_manifest(trained.frame.head(500), "first-500.csv")
    record = manager.track_model_lineage(NAME, 2, manifest, FEATURES, parent_version=1)
    assert record["data_version"] == manifest.version
    assert record["data_manifest"]["source"] == "first-500.csv"
    with pytest.raises(InputError, match="neither a data version id"):
        manager.track_model_lineage(NAME, 2, "not-a-version", FEATURES)
    with pytest.raises(InputError, match="cannot be its own parent"):
        manager.track_model_lineage(NAME, 2, manifest, FEATURES, parent_version=2)
    with pytest.raises(ModelNotFoundError, match="no version '9'"):
        manager.track_model_lineage(NAME, 2, manifest, FEATURES, parent_version=9)
    with pytest.raises(ModelNotFoundError, match="no version '9'"):
        manager.track_model_lineage(NAME, 9, manifest, FEATURES)


def test_lineage_chain_stops_at_a_parent_cycle(
    manager: ModelMetadataManager, trained: Trained
) -> None:
    client = MlflowClient(trained.settings.tracking_uri)
    client.set_model_version_tag(NAME, "1", "titans.parent_version", "2")
    client.set_model_version_tag(NAME, "2", "titans.parent_version", "1")
    try:
        chain = manager.lineage_chain(NAME, 2)
    finally:
        client.delete_model_version_tag(NAME, "1", "titans.parent_version")
    assert [n["version"] for n in chain] == ["2", "1"]
    assert chain[-1]["cycle"] == "2"


def test_experiment_metadata_becomes_experiment_tags(
    manager: ModelMetadataManager, trained: Trained
) -> None:
    client = MlflowClient(trained.settings.tracking_uri)
    experiment = client.get_experiment_by_name(NAME)
    assert experiment is not None
    manager.track_experiment_metadata(
        experiment.experiment_id, {"owner": "ml-platform", "thresholds": {"mae": 150}}
    )
    manager.track_experiment_metadata(NAME, {"purpose": "amount prediction"})  # by name
    tags = client.get_experiment(experiment.experiment_id).tags
    assert tags["owner"] == "ml-platform"
    assert json.loads(tags["thresholds"]) == {"mae": 150}
    assert tags["purpose"] == "amount prediction"
    with pytest.raises(ExperimentNotFoundError, match="no MLflow experiment"):
        manager.track_experiment_metadata("no-such-experiment", {"a": 1})
    with pytest.raises(InputError, match="no metadata"):
        manager.track_experiment_metadata(NAME, {})


def test_dependencies_name_requirements_python_data_and_code(
    manager: ModelMetadataManager, trained: Trained
) -> None:
    manager.track_model_lineage(NAME, 2, trained.result.data_version, FEATURES, parent_version=1)
    deps = manager.get_model_dependencies(NAME, 2)
    assert f"scikit-learn=={sklearn.__version__}" in deps["requirements"]
    assert f"mlflow=={mlflow.__version__}" in deps["requirements"]
    assert deps["python_version"] == platform.python_version()
    assert deps["mlflow_version"] == mlflow.__version__
    assert deps["data_version"] == trained.result.data_version
    assert deps["parent_version"] == "1"
    assert deps["code_version"] == _tags(trained.settings, "1")["titans.git_commit"]
    assert manager.get_model_dependencies(NAME, 1)["parent_version"] is None
    with pytest.raises(ModelNotFoundError):
        manager.get_model_dependencies(NAME, 5)

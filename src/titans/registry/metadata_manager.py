"""ModelMetadataManager: lineage of registered versions back to the raw data they learned from.

A version's lineage is a JSON artifact on its training run (``lineage/<name>-v<version>.json``)
plus version tags: ``titans.data_version`` (the content hash of the training data, see
titans.data.versions), ``titans.features``, ``titans.parent_version`` (the version a retrain
started from) and ``titans.git_commit`` (the code). :meth:`ModelMetadataManager.lineage_chain`
follows parent versions back to the first one and attaches each data version's manifest when
``<TITANS_HOME>/data/versions/<id>.json`` exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from titans.config import Settings
from titans.data.versions import (
    VERSION_LENGTH,
    DataManifest,
    read_manifest,
    write_manifest,
)
from titans.errors import (
    DataValidationError,
    ExperimentNotFoundError,
    InputError,
    ModelNotFoundError,
)
from titans.models.train import configure_mlflow

DATA_VERSION_TAG = "titans.data_version"
PARENT_TAG = "titans.parent_version"
FEATURES_TAG = "titans.features"
CODE_TAG = "titans.git_commit"
LINEAGE_TAG = "titans.lineage"
LINEAGE_DIR = "lineage"
#: MLflow caps tag values (5,000 characters on the sqlite store); longer lists are cut with "…"
MAX_TAG_CHARS = 5000
#: a lineage chain longer than this is cut (a cycle of parent tags is cut where it repeats)
MAX_CHAIN = 1000
_DATA_VERSION_ID = re.compile(rf"^[0-9a-f]{{{VERSION_LENGTH}}}$")

#: what ``training_data`` may be: the frame, its manifest (object, dict or file), or the id
TrainingData: TypeAlias = pd.DataFrame | DataManifest | Mapping[str, Any] | str | os.PathLike[str]


class ModelMetadataManager:
    """Lineage, experiment metadata and dependencies of registered Titans model versions."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self.client: MlflowClient = configure_mlflow(self.settings)

    @property
    def manifest_dir(self) -> Path:
        """Where data manifests are kept: ``<TITANS_HOME>/data/versions``."""
        return self.settings.home_dir / "data" / "versions"

    # ------------------------------------------------------------------ lineage

    def track_model_lineage(
        self,
        model_name: str,
        version: str | int,
        training_data: TrainingData,
        features: Sequence[str],
        parent_version: str | int | None = None,
    ) -> dict[str, Any]:
        """Record what ``version`` was trained on: data version, features and parent version.

        ``training_data`` is the training frame (its data version is computed and its manifest
        written under ``<TITANS_HOME>/data/versions``), a DataManifest (or its dict, or the path
        of its JSON file), or a data version id. ``parent_version`` defaults to the version's
        ``titans.parent_version`` tag. Returns the lineage record, also logged as a JSON
        artifact on the version's run and summarised in version tags.
        """
        mv = self._model_version(model_name, str(version))
        manifest = self._manifest_of(training_data)
        data_version = manifest.version if isinstance(manifest, DataManifest) else manifest
        feature_list = [str(f) for f in features]
        if any(not f.strip() for f in feature_list):
            raise InputError("feature names must be non-empty strings; pass the columns used")
        tags = dict(mv.tags or {})
        parent = str(parent_version) if parent_version is not None else tags.get(PARENT_TAG)
        if parent is not None:
            if parent == str(mv.version):
                raise InputError(f"version {mv.version} cannot be its own parent")
            self._model_version(model_name, parent)  # the parent must exist
        record = {
            "model_name": model_name,
            "version": str(mv.version),
            "run_id": mv.run_id,
            "data_version": data_version,
            "data_manifest": manifest.to_dict() if isinstance(manifest, DataManifest) else None,
            "features": feature_list,
            "parent_version": parent,
            "code_version": tags.get(CODE_TAG),
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        artifact = f"{LINEAGE_DIR}/{model_name}-v{mv.version}.json"
        if mv.run_id:
            self.client.log_dict(mv.run_id, record, artifact)
        new_tags = {
            DATA_VERSION_TAG: data_version,
            FEATURES_TAG: _cap(",".join(feature_list)),
            "titans.feature_count": str(len(feature_list)),
        }
        if parent is not None:
            new_tags[PARENT_TAG] = parent
        if mv.run_id:
            new_tags[LINEAGE_TAG] = f"runs:/{mv.run_id}/{artifact}"
        for key, value in new_tags.items():
            self.client.set_model_version_tag(model_name, str(mv.version), key, value)
        return record

    def _manifest_of(self, training_data: TrainingData) -> DataManifest | str:
        """A manifest (written to the manifest folder when built from a frame) or a bare id."""
        if isinstance(training_data, pd.DataFrame):
            if training_data.empty:
                raise InputError("the training data frame is empty; pass the rows trained on")
            self.manifest_dir.mkdir(parents=True, exist_ok=True)
            return write_manifest(training_data, "track_model_lineage", self.manifest_dir)
        if isinstance(training_data, DataManifest):
            return training_data
        if isinstance(training_data, Mapping):
            return DataManifest.from_dict(dict(training_data))
        text = os.fspath(training_data)
        if _DATA_VERSION_ID.match(text):
            return self._stored_manifest(text) or text
        if Path(text).is_file():
            return read_manifest(text)
        raise InputError(
            f"training data {text!r} is neither a data version id ({VERSION_LENGTH} hex digits) "
            "nor a manifest file; pass the frame, its manifest or `titans data version` output"
        )

    def _stored_manifest(self, data_version: str | None) -> DataManifest | None:
        if not data_version:
            return None
        path = self.manifest_dir / f"{data_version}.json"
        if not path.is_file():
            return None
        try:
            return read_manifest(path)
        except DataValidationError:
            return None

    def lineage_chain(self, model_name: str, version: str | int) -> list[dict[str, Any]]:
        """``version``, then its parent, its parent's parent ... each with its data version and
        (when stored) the data manifest; the last entry is the first model of the line."""
        chain: list[dict[str, Any]] = []
        seen: set[str] = set()
        current: str | None = str(version)
        while current is not None and len(chain) < MAX_CHAIN:
            if current in seen:
                chain[-1]["cycle"] = current  # a hand-edited tag points back: stop, say so
                break
            seen.add(current)
            mv = self._model_version(model_name, current)
            tags = dict(mv.tags or {})
            manifest = self._stored_manifest(tags.get(DATA_VERSION_TAG))
            chain.append(
                {
                    "version": str(mv.version),
                    "run_id": mv.run_id,
                    "stage": tags.get("stage", "None"),
                    "data_version": tags.get(DATA_VERSION_TAG),
                    "data_manifest": manifest.to_dict() if manifest else None,
                    "data_source": tags.get("titans.data_source"),
                    "features": tags.get(FEATURES_TAG, ""),
                    "code_version": tags.get(CODE_TAG),
                    "parent_version": tags.get(PARENT_TAG),
                    "created": pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC").isoformat(),
                }
            )
            current = tags.get(PARENT_TAG)
        return chain

    # ------------------------------------------------------------------ experiments

    def track_experiment_metadata(self, experiment_id: str, metadata: Mapping[str, Any]) -> None:
        """Set each ``metadata`` item as an experiment tag (non-text values as JSON).

        ``experiment_id`` may also be the experiment's name.
        """
        if not metadata:
            raise InputError("no metadata given; pass a mapping of tag names to values")
        experiment = self._experiment(str(experiment_id))
        for key, value in metadata.items():
            if not isinstance(key, str) or not key.strip():
                raise InputError(f"metadata key {key!r} must be a non-empty string")
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            self.client.set_experiment_tag(experiment.experiment_id, key, _cap(text))

    def _experiment(self, id_or_name: str) -> Any:
        try:
            found = self.client.get_experiment(id_or_name) if id_or_name.isdigit() else None
        except MlflowException:
            found = None
        found = found or self.client.get_experiment_by_name(id_or_name)
        if found is None:
            raise ExperimentNotFoundError(
                f"no MLflow experiment with id or name {id_or_name!r}; list them with "
                "`titans experiments list`"
            )
        return found

    # ------------------------------------------------------------------ dependencies

    def get_model_dependencies(self, model_name: str, version: str | int) -> dict[str, Any]:
        """What it takes to rebuild or serve ``version``: pip requirements, Python, MLflow,
        data version, parent version and code version."""
        mv = self._model_version(model_name, str(version))
        tags = dict(mv.tags or {})
        files = self._model_files(model_name, str(mv.version))
        requirements = [
            line.strip()
            for line in files.get("requirements.txt", "").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        python_env = _yaml(files.get("python_env.yaml"))
        mlmodel = _yaml(files.get("MLmodel"))
        return {
            "model_name": model_name,
            "version": str(mv.version),
            "run_id": mv.run_id,
            "requirements": requirements,
            "python_version": str(python_env.get("python") or tags.get("titans.python_version"))
            if python_env.get("python") or tags.get("titans.python_version")
            else None,
            "mlflow_version": mlmodel.get("mlflow_version"),
            "data_version": tags.get(DATA_VERSION_TAG),
            "parent_version": tags.get(PARENT_TAG),
            "code_version": tags.get(CODE_TAG),
            "package_version": tags.get("titans.package_version"),
        }

    def _model_files(self, model_name: str, version: str) -> dict[str, str]:
        """requirements.txt, python_env.yaml and MLmodel of the version's model (text)."""
        import mlflow.artifacts

        base = self.client.get_model_version_download_uri(model_name, version).rstrip("/")
        out: dict[str, str] = {}
        tmp = tempfile.mkdtemp(prefix="titans-deps-")
        try:
            for name in ("requirements.txt", "python_env.yaml", "MLmodel"):
                try:
                    local = mlflow.artifacts.download_artifacts(
                        artifact_uri=f"{base}/{name}", dst_path=tmp
                    )
                except (MlflowException, OSError):
                    continue  # an older or foreign model without this file
                out[name] = Path(local).read_text(encoding="utf-8")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    # ------------------------------------------------------------------ plumbing

    def _model_version(self, model_name: str, version: str) -> ModelVersion:
        try:
            return self.client.get_model_version(model_name, version)
        except MlflowException as exc:
            raise ModelNotFoundError(
                f"{model_name} has no version {version!r}; list versions with "
                f"`titans registry show {model_name}`"
            ) from exc


def _cap(text: str) -> str:
    return text if len(text) <= MAX_TAG_CHARS else text[: MAX_TAG_CHARS - 1] + "…"


def _yaml(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


__all__ = ["ModelMetadataManager"]

"""Log a model derived from registered versions (ONNX, tuned, ensemble) and register it.

The derived model gets its own MLflow run in the source's experiment, carrying what the
platform needs to validate, promote, serve and monitor it like a trained one: the source run's
``titans.*`` tags, its holdout and reference profile, its baseline metrics, the derived model's
own metrics on that holdout, and lineage tags (``titans.optimization.*``) naming the source.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from titans.config import Settings
from titans.models.base import TrainedModel
from titans.models.pyfunc import (
    log_titans_model,
    save_trained,
)
from titans.models.train import (
    HOLDOUT_FILENAME,
    _pip_requirements,
    configure_mlflow,
    ensure_experiment,
    finite_metrics,
)
from titans.monitoring.profile import PROFILE_FILENAME
from titans.validation.resolve import LoadedModel, load_model

#: version/run tag prefix of everything the optimiser records
TAG_PREFIX = "titans.optimization."


@dataclass
class Source:
    """A registered (or logged) model version the optimiser starts from."""

    uri: str
    registered_name: str
    version: str | None
    run_id: str
    trained: TrainedModel
    holdout: pd.DataFrame

    @property
    def version_uri(self) -> str:
        return f"models:/{self.registered_name}/{self.version}" if self.version else self.uri


def load_source(model_uri: str, settings: Settings) -> Source:
    """The model behind ``model_uri``, its holdout, and the registered name to add versions to."""
    loaded: LoadedModel = load_model(model_uri, settings)
    resolved = loaded.resolved
    name = resolved.registered_name or settings.registered_name(loaded.trained.spec_name)
    return Source(
        uri=model_uri,
        registered_name=name,
        version=resolved.version,
        run_id=resolved.run_id,
        trained=loaded.trained,
        holdout=loaded.holdout,
    )


def _pip(extra: tuple[str, ...]) -> list[str]:
    import importlib.metadata

    pins = []
    for dist in extra:
        try:
            pins.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(dist)
    return [*_pip_requirements(), *pins]


def log_derived(
    source: Source,
    trained: TrainedModel,
    *,
    settings: Settings,
    run_name: str,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    extra_pip: tuple[str, ...] = (),
) -> tuple[str, str]:
    """Log ``trained`` as a Titans pyfunc in a new run beside the source's; (model URI, run id).

    Nothing is registered yet: the caller registers the logged model when it passes its checks.
    """
    client = configure_mlflow(settings)
    source_run = client.get_run(source.run_id)
    source_tags = {k: v for k, v in source_run.data.tags.items() if k.startswith("titans.")}
    baseline = {k: v for k, v in source_run.data.metrics.items() if k.startswith("baseline_")}
    all_tags = {**source_tags, **tags}
    spec = trained.spec
    experiment_id = ensure_experiment(client, source.registered_name, settings)
    example = source.holdout.head(3)
    output_example = trained.predict(spec.select(example) if len(spec.select(example)) else example)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags(all_tags)
        mlflow.log_params({f"model.{k}": v for k, v in list(trained.params.items())[:90]})
        mlflow.log_metrics(finite_metrics(metrics))
        mlflow.log_metrics(finite_metrics(baseline))
        score = metrics.get(spec.primary_metric)
        base = baseline.get(f"baseline_{spec.primary_metric}")
        if score is not None and base is not None and np.isfinite(score) and np.isfinite(base):
            margin = score - base if spec.direction == "max" else base - score
            mlflow.log_metric("margin_over_baseline", margin)
        with tempfile.TemporaryDirectory() as tmp:
            tmp_dir = Path(tmp)
            holdout_path = tmp_dir / HOLDOUT_FILENAME
            source.holdout.to_parquet(holdout_path, index=False)
            mlflow.log_artifact(str(holdout_path))
            profile_path = Path(client.download_artifacts(source.run_id, PROFILE_FILENAME, tmp))
            mlflow.log_artifact(str(profile_path))
            model_path = save_trained(trained, tmp_dir)
            with warnings.catch_warnings():  # no input example: the holdout is logged instead
                warnings.simplefilter("ignore", UserWarning)
                info = log_titans_model(
                    model_path,
                    profile_path,
                    output_example,
                    pip_requirements=_pip(extra_pip),
                    tags=all_tags,
                )
        return str(info.model_uri), str(run.info.run_id)


def register_derived(
    logged_uri: str,
    source: Source,
    *,
    settings: Settings,
    description: str,
    tags: Mapping[str, str],
    actor: str = "system",
) -> str:
    """Register a logged derived model as a new version of the source's name; its version."""
    from titans.registry.registry_manager import ModelRegistryManager

    manager = ModelRegistryManager(settings)
    registered = manager.register_model(
        logged_uri, source.registered_name, version_description=description, actor=actor
    )
    version = str(registered.version)
    for key, value in tags.items():
        manager.client.set_model_version_tag(source.registered_name, version, key, value)
    return version


def pickled_size(trained: TrainedModel) -> int:
    """Bytes of the model's artifact as logged (the pickled TrainedModel)."""
    with tempfile.TemporaryDirectory() as tmp:
        return save_trained(trained, Path(tmp)).stat().st_size


def tag_values(values: Mapping[str, Any]) -> dict[str, str]:
    """``titans.optimization.<key>`` tags, numbers with 6 significant digits."""
    out = {}
    for key, value in values.items():
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        out[f"{TAG_PREFIX}{key}"] = text[:5000]
    return out

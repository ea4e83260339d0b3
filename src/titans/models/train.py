"""Training: fit each model spec, log it to MLflow with its profile, register a version."""

from __future__ import annotations

import logging
import platform
import subprocess  # nosec B404 - fixed git command, no shell
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas

import titans
from titans.config import Settings
from titans.data.versions import data_version
from titans.errors import InputError
from titans.models.base import Evaluation, get_spec, model_names
from titans.models.pyfunc import (
    log_titans_model,
    save_trained,
)
from titans.monitoring.profile import PROFILE_FILENAME, ReferenceProfile, monitored_view

log = logging.getLogger(__name__)

HOLDOUT_FILENAME = "holdout.parquet"
HOLDOUT_MAX_ROWS = 50_000

#: what a progress callback receives: (model key, step description)
ProgressCallback = Callable[[str, str], None]


@dataclass
class TrainingResult:
    """One trained, logged and registered model."""

    model_key: str
    registered_name: str
    version: str
    run_id: str
    model_uri: str
    evaluation: Evaluation
    data_version: str
    train_rows: int
    test_rows: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def registry_uri(self) -> str:
        return f"models:/{self.registered_name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_key,
            "registered_name": self.registered_name,
            "version": self.version,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "data_version": self.data_version,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "seconds": self.seconds,
            "warnings": self.warnings,
            **self.evaluation.to_dict(),
        }


def git_commit() -> str:
    """The code version: HEAD's commit, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(  # nosec B603 B607 - fixed argv
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(titans.__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow at the settings' tracking URI (and quiet its chatty loggers)."""
    settings.ensure_home()
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # the cloudpickle notice is about the wrapper object, which holds no state of its own
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    """Experiment id for ``name``; embedded stores keep artifacts under TITANS_HOME."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = None
    if settings.tracking_uri.startswith("sqlite:") or settings.tracking_uri.startswith("file:"):
        location = (settings.artifact_root / name).as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def _pip_requirements() -> list[str]:
    import sklearn

    return [
        f"titans-mlops=={titans.__version__}",
        f"mlflow=={mlflow.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
    ]


def train_models(
    frame: pd.DataFrame,
    *,
    models: Sequence[str] | None = None,
    seed: int | None = None,
    settings: Settings | None = None,
    data_source: str = "generated",
    extra_tags: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> list[TrainingResult]:
    """Train, evaluate, log and register each requested model on one transactions frame."""
    settings = settings or Settings()
    seed = settings.seed if seed is None else seed
    keys = list(models or model_names())
    unknown = [k for k in keys if k not in model_names()]
    if unknown:
        raise InputError(f"unknown model(s) {unknown}; choose from {', '.join(model_names())}")
    if frame.empty:
        raise InputError("no transactions to train on; pass a non-empty data set")
    client = configure_mlflow(settings)
    version_id = data_version(frame)
    commit = git_commit()
    results = []
    for key in keys:
        results.append(
            _train_one(
                key,
                frame,
                seed=seed,
                settings=settings,
                client=client,
                version_id=version_id,
                commit=commit,
                data_source=data_source,
                extra_tags=extra_tags or {},
                progress=progress or (lambda _k, _s: None),
            )
        )
    return results


def _train_one(
    key: str,
    frame: pd.DataFrame,
    *,
    seed: int,
    settings: Settings,
    client: MlflowClient,
    version_id: str,
    commit: str,
    data_source: str,
    extra_tags: dict[str, str],
    progress: ProgressCallback,
) -> TrainingResult:
    started = time.perf_counter()
    spec = get_spec(key, settings)
    progress(key, "splitting by time")
    train, test = spec.split(frame)
    progress(key, f"fitting on {len(train):,} rows")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        trained = spec.fit(train, seed)
    progress(key, f"evaluating on {len(test):,} held-out rows")
    evaluation = spec.evaluation(trained, train, test)
    example = spec.input_example(train)
    output_example = trained.predict(example)
    train_predictions = trained.predict(spec.select(train)) if key != "cashflow" else None
    profile = _reference_profile(spec.select(train), train_predictions, key, version_id)

    registered_name = settings.registered_name(key)
    experiment_id = ensure_experiment(client, registered_name, settings)
    tags = {
        "titans.model": key,
        "titans.data_version": version_id,
        "titans.git_commit": commit,
        "titans.package_version": titans.__version__,
        "titans.seed": str(seed),
        "titans.data_source": data_source,
        **extra_tags,
    }
    progress(key, "logging to MLflow")
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{key}-{version_id[:8]}") as run:
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                "model": key,
                "seed": seed,
                "train_rows": len(train),
                "test_rows": len(test),
                "train_start": str(pd.Timestamp(train["date"].min()).date()),
                "train_end": str(pd.Timestamp(train["date"].max()).date()),
                "test_start": str(pd.Timestamp(test["date"].min()).date()),
                "test_end": str(pd.Timestamp(test["date"].max()).date()),
                **{f"model.{k}": v for k, v in trained.params.items()},
            }
        )
        mlflow.log_metrics(finite_metrics(evaluation.metrics))
        mlflow.log_metrics(
            finite_metrics({f"baseline_{k}": v for k, v in evaluation.baseline_metrics.items()})
        )
        mlflow.log_metric("margin_over_baseline", evaluation.margin)
        mlflow.log_dict(evaluation.to_dict(), "evaluation.json")
        if trained.warnings:
            mlflow.log_text("\n".join(trained.warnings), "training_warnings.txt")
        with warnings.catch_warnings():  # a plain path source is "ambiguous" to MLflow
            warnings.simplefilter("ignore", UserWarning)
            dataset = from_pandas(
                frame.head(1000),
                source=_dataset_source(data_source),
                name=f"transactions-{version_id[:12]}",
                digest=version_id[:36],
            )
        mlflow.log_input(dataset, context="training")
        with tempfile.TemporaryDirectory() as tmp:
            tmp_dir = Path(tmp)
            model_path = save_trained(trained, tmp_dir)
            profile_path = profile.save(tmp_dir / PROFILE_FILENAME)
            mlflow.log_artifact(str(profile_path))
            mlflow.log_artifact(str(_save_holdout(test, tmp_dir, seed)))
            progress(key, "logging the model")
            info = log_titans_model(
                model_path,
                profile_path,
                output_example,
                input_example=_export_example(example),
                pip_requirements=_pip_requirements(),
                tags=tags,
            )
        run_id = run.info.run_id
    progress(key, "registering")
    from titans.registry.registry_manager import ModelRegistryManager

    registered = ModelRegistryManager(settings).register_model(
        info.model_uri,
        registered_name,
        version_description=f"{key} trained on data version {version_id} (seed {seed})",
        actor=extra_tags.get("titans.actor", "system"),
    )
    version = str(registered.version)
    summary = ", ".join(f"{k}={v:.4g}" for k, v in finite_metrics(evaluation.metrics).items())
    for tag_key, value in {
        **tags,
        "titans.metrics": summary,
        "titans.python_version": platform.python_version(),
    }.items():
        client.set_model_version_tag(registered_name, version, tag_key, value)
    return TrainingResult(
        model_key=key,
        registered_name=registered_name,
        version=version,
        run_id=run_id,
        model_uri=info.model_uri,
        evaluation=evaluation,
        data_version=version_id,
        train_rows=len(train),
        test_rows=len(test),
        seconds=time.perf_counter() - started,
        warnings=list(trained.warnings),
    )


def _reference_profile(
    train: pd.DataFrame, predictions: pd.DataFrame | None, key: str, version_id: str
) -> ReferenceProfile:
    view = monitored_view(train)
    kinds = None
    if predictions is not None:
        column = "prediction" if "prediction" in predictions else "score"
        values = predictions[column].to_numpy()
        view["prediction"] = values
        kinds = {
            **{c: k for c, k in _monitored_kinds(view).items()},
            "prediction": "numeric" if np.issubdtype(values.dtype, np.number) else "categorical",
        }
    return ReferenceProfile.from_frame(
        view, kinds=kinds, meta={"model": key, "data_version": version_id}
    )


def _monitored_kinds(view: pd.DataFrame) -> dict[str, str]:
    from titans.monitoring.profile import MONITORED_COLUMNS

    return {c: k for c, k in MONITORED_COLUMNS.items() if c in view.columns}


def _export_example(example: pd.DataFrame) -> pd.DataFrame:
    """Typed rows back in export headers, JSON-friendly (dates as strings)."""
    from titans.data.columns import EXPORT_COLUMNS, SNAKE_CASE

    out = pd.DataFrame(
        {
            export: example[snake].to_numpy()
            for export, snake in SNAKE_CASE.items()
            if export in EXPORT_COLUMNS and snake in example
        }
    )
    out["Date"] = pd.to_datetime(out["Date"]).dt.strftime("%Y-%m-%d")
    return out.astype(object).where(out.notna(), None).reset_index(drop=True)


def _dataset_source(data_source: str) -> Any:
    """A file the data came from, or a description of how it was generated."""
    path = Path(data_source)
    if path.exists():
        return str(path.resolve())
    from mlflow.data.code_dataset_source import CodeDatasetSource

    return CodeDatasetSource(tags={"titans.data_source": data_source})


def _save_holdout(test: pd.DataFrame, directory: Path, seed: int) -> Path:
    """The held-out rows (at most HOLDOUT_MAX_ROWS, sampled by seed) for later re-evaluation."""
    if len(test) > HOLDOUT_MAX_ROWS:
        test = test.sample(HOLDOUT_MAX_ROWS, random_state=seed).sort_values("date", kind="stable")
    path = directory / HOLDOUT_FILENAME
    test.reset_index(drop=True).to_parquet(path, index=False)
    return path


def load_holdout(run_id: str, settings: Settings | None = None) -> pd.DataFrame:
    """The held-out rows a run was evaluated on (validation and comparisons reuse them)."""
    client = MlflowClient(tracking_uri=(settings or Settings()).tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, HOLDOUT_FILENAME, tmp)
        return pd.read_parquet(local)


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics MLflow can log: None, NaN and infinities left out."""
    return {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}

"""ExperimentManager: create, log, compare and rank MLflow experiments through one explicit client.

Every call goes through an ``mlflow.MlflowClient`` bound to ``Settings.tracking_uri``; nothing
here reads or sets MLflow's global tracking state, so two managers on two stores never mix.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeAlias
from urllib.parse import urlparse

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Experiment, Metric, Param, Run, ViewType
from mlflow.exceptions import MlflowException

from titans.config import Settings, get_settings
from titans.errors import ExperimentNotFoundError, InputError, RunNotFoundError, TitansError

Direction: TypeAlias = Literal["min", "max"]
#: What `log_experiment_run` accepts per artifact name (see its docstring).
ArtifactValue: TypeAlias = str | os.PathLike[str] | Mapping[str, Any] | list[Any]

#: Exact metric names whose direction is known. Other modules may read it and add their own
#: (``METRIC_DIRECTIONS["coverage"] = "max"``); names not listed fall back to the name rules of
#: `metric_direction`.
METRIC_DIRECTIONS: dict[str, Direction] = {
    "accuracy": "max",
    "balanced_accuracy": "max",
    "f1": "max",
    "macro_f1": "max",
    "weighted_f1": "max",
    "precision": "max",
    "recall": "max",
    "recall_at_alert_rate": "max",
    "precision_at_alert_rate": "max",
    "r2": "max",
    "pr_auc": "max",
    "roc_auc": "max",
    "mae": "min",
    "mse": "min",
    "rmse": "min",
    "mape": "min",
    "smape": "min",
    "log_loss": "min",
}

# A margin or improvement over a baseline grows as the model gets better, even when it is
# measured in an error unit ("mae_margin"), so these words win over the error words below.
_HIGHER_IS_BETTER_WORDS = ("margin", "improvement", "lift", "gain")
_LOWER_IS_BETTER_WORDS = ("mae", "mse", "rmse", "mape", "smape", "loss", "error", "latency")

DESCRIPTION_TAG = "mlflow.note.content"
_REMOTE_SCHEMES = {"http", "https", "databricks"}
_PAGE_SIZE = 1000
_MAX_PAGES = 100  # bounds every listing at 100,000 runs or experiments
_MAX_PARAM_CHARS = 6000  # MLflow's limit for one parameter value


def metric_direction(metric_name: str, direction: str | None = None) -> Direction:
    """Whether lower ("min") or higher ("max") values of a metric are better.

    An explicit ``direction`` wins; then `METRIC_DIRECTIONS` (by full name, then by the part
    after the last ``.`` or ``/``); then names mentioning margin/improvement/lift/gain are
    "max"; names mentioning mae, mse, rmse, mape, smape, loss, error or latency are "min";
    everything else is "max".

    >>> metric_direction("mae"), metric_direction("val/macro_f1"), metric_direction("p95_latency")
    ('min', 'max', 'min')
    >>> metric_direction("mae_margin"), metric_direction("macro_f1", direction="min")
    ('max', 'min')
    """
    if direction is not None:
        if direction not in ("min", "max"):
            raise InputError(f"direction must be 'min' or 'max', got {direction!r}")
        return "min" if direction == "min" else "max"
    name = metric_name.strip().lower()
    leaf = re.split(r"[./]", name)[-1]
    for key in (name, leaf):
        if key in METRIC_DIRECTIONS:
            return METRIC_DIRECTIONS[key]
    if any(word in name for word in _HIGHER_IS_BETTER_WORDS):
        return "max"
    if any(word in name for word in _LOWER_IS_BETTER_WORDS):
        return "min"
    return "max"


class ExperimentManager:
    """The task list's experiment manager, on MLflow's tracking API.

    ``ExperimentManager()`` uses the settings from the environment (``TITANS_HOME``,
    ``TITANS_TRACKING_URI``); pass a `Settings` to point it elsewhere.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else get_settings()
        self.tracking_uri: str = self.settings.tracking_uri
        _ensure_sqlite_folder(self.tracking_uri)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # ------------------------------------------------------------------ experiments
    def create_experiment(
        self, name: str, description: str, tags: Mapping[str, Any] | None = None
    ) -> str:
        """Create an experiment and return its id; an existing name returns the existing id.

        The description is stored as the ``mlflow.note.content`` tag (what the MLflow UI shows).
        An existing experiment keeps its description and tags; a deleted one is restored.
        """
        name = name.strip()
        if not name:
            raise InputError("experiment name is empty; pass a name such as 'titans-category'")
        with self._tracking_errors():
            existing = self.client.get_experiment_by_name(name)
            if existing is not None:
                if existing.lifecycle_stage == "deleted":
                    self.client.restore_experiment(existing.experiment_id)
                return str(existing.experiment_id)
            all_tags = {str(key): str(value) for key, value in (tags or {}).items()}
            if description:
                all_tags[DESCRIPTION_TAG] = description
            try:
                return str(
                    self.client.create_experiment(
                        name, artifact_location=self._artifact_location(name), tags=all_tags
                    )
                )
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                # another process created it between our lookup and our create
                raced = self.client.get_experiment_by_name(name)
                if raced is None:
                    raise
                return str(raced.experiment_id)

    def get_experiment(self, name_or_id: str) -> Experiment:
        """The active experiment with this name, or else with this id.

        Raises `ExperimentNotFoundError` when neither exists (or it was deleted).
        """
        key = str(name_or_id).strip()
        with self._tracking_errors():
            experiment = self.client.get_experiment_by_name(key) if key else None
            if experiment is None and key.isdigit():
                try:
                    experiment = self.client.get_experiment(key)
                except MlflowException as exc:
                    if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                        raise
        if experiment is None or experiment.lifecycle_stage == "deleted":
            raise ExperimentNotFoundError(
                f"experiment {key!r} not found at {self.tracking_uri}; "
                "`titans experiments list` shows the known names and ids"
            )
        return experiment

    def list_experiments(self) -> pd.DataFrame:
        """Active experiments, newest first: id, name, description, times, artifact location."""
        experiments: list[Experiment] = []
        with self._tracking_errors():
            token: str | None = None
            for _ in range(_MAX_PAGES):
                page = self.client.search_experiments(
                    view_type=ViewType.ACTIVE_ONLY,
                    max_results=_PAGE_SIZE,
                    order_by=["last_update_time DESC"],
                    page_token=token,
                )
                experiments.extend(page)
                token = page.token
                if not token:
                    break
        frame = pd.DataFrame(
            {
                "experiment_id": [str(e.experiment_id) for e in experiments],
                "name": [e.name for e in experiments],
                "description": [e.tags.get(DESCRIPTION_TAG, "") for e in experiments],
                "creation_time": _timestamps([e.creation_time for e in experiments]),
                "last_update_time": _timestamps([e.last_update_time for e in experiments]),
                "artifact_location": [e.artifact_location for e in experiments],
            }
        )
        return frame

    # ------------------------------------------------------------------ runs
    def log_experiment_run(
        self,
        experiment_id: str,
        run_name: str,
        parameters: Mapping[str, Any],
        metrics: Mapping[str, Any],
        artifacts: Mapping[str, ArtifactValue] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        """Log one finished run and return its run id.

        ``parameters`` are stored as strings; ``metrics`` must be numbers. ``artifacts`` maps an
        artifact name to what to store under it:

        - a `pathlib.Path` (must exist), or a ``str`` naming an existing file or folder: the
          file is stored as ``<name>/<file name>``, a folder's content under ``<name>/``;
        - a ``dict`` or ``list``: stored as JSON in ``<name>`` (``.json`` added when the name has
          no suffix; a ``.yaml``/``.yml`` name is stored as YAML);
        - any other ``str``: its text, stored in ``<name>`` (``.txt`` added when no suffix).

        Everything is checked before the run is created, so bad input leaves no half-logged run;
        a failure while logging marks the run FAILED.
        """
        experiment = self.get_experiment(experiment_id)
        params = _check_params(parameters)
        metric_values = _check_metrics(metrics)
        planned = [_plan_artifact(name, value) for name, value in (artifacts or {}).items()]
        run_tags = {str(key): str(value) for key, value in (tags or {}).items()}

        with self._tracking_errors():
            run = self.client.create_run(
                str(experiment.experiment_id), run_name=run_name, tags=run_tags
            )
            run_id = run.info.run_id
            try:
                now_ms = int(time.time() * 1000)
                param_items = [Param(key, value) for key, value in params.items()]
                metric_items = [
                    Metric(key, value, now_ms, 0) for key, value in metric_values.items()
                ]
                for start in range(0, len(param_items), 100):
                    self.client.log_batch(run_id, params=param_items[start : start + 100])
                for start in range(0, len(metric_items), 1000):
                    self.client.log_batch(run_id, metrics=metric_items[start : start + 1000])
                for kind, name, payload in planned:
                    self._log_artifact(run_id, kind, name, payload)
            except BaseException:
                self.client.set_terminated(run_id, status="FAILED")
                raise
            self.client.set_terminated(run_id, status="FINISHED")
        return str(run_id)

    def compare_experiments(self, experiment_ids: Sequence[str]) -> pd.DataFrame:
        """One row per run of the given experiments (names or ids), newest first.

        Columns: ``run_id``, ``run_name``, ``experiment_id``, ``experiment_name``, ``status``,
        ``start_time``, ``end_time`` (UTC timestamps), then ``params.<name>`` (str) and
        ``metrics.<name>`` (float64; NaN where a run did not log it), each group sorted by name.
        """
        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        if not experiment_ids:
            raise InputError("no experiment given; pass one or more experiment names or ids")
        experiments = {}
        for key in experiment_ids:
            experiment = self.get_experiment(key)
            experiments[str(experiment.experiment_id)] = experiment.name
        runs = self._search_runs(list(experiments), order_by=["attributes.start_time DESC"])

        param_keys = sorted({key for run in runs for key in run.data.params})
        metric_keys = sorted({key for run in runs for key in run.data.metrics})
        columns: dict[str, Any] = {
            "run_id": [run.info.run_id for run in runs],
            "run_name": [run.info.run_name for run in runs],
            "experiment_id": [str(run.info.experiment_id) for run in runs],
            "experiment_name": [experiments[str(run.info.experiment_id)] for run in runs],
            "status": [run.info.status for run in runs],
            "start_time": _timestamps([run.info.start_time for run in runs]),
            "end_time": _timestamps([run.info.end_time for run in runs]),
        }
        for key in param_keys:
            columns[f"params.{key}"] = pd.Series(
                [run.data.params.get(key) for run in runs], dtype="object"
            )
        for key in metric_keys:
            columns[f"metrics.{key}"] = pd.Series(
                [run.data.metrics.get(key, math.nan) for run in runs], dtype="float64"
            )
        return pd.DataFrame(columns)

    def get_best_run(
        self, experiment_id: str, metric_name: str, direction: str | None = None
    ) -> Run:
        """The run of an experiment (name or id) with the best value of ``metric_name``.

        Best means lowest or highest as `metric_direction` decides (override with
        ``direction="min"`` or ``"max"``). Runs that did not log the metric, or logged NaN, are
        ignored; ties go to the most recent run. Raises `RunNotFoundError` when no run has it.
        """
        if not metric_name or "`" in metric_name:
            raise InputError(f"metric name {metric_name!r} is not valid; pass e.g. --metric mae")
        chosen = metric_direction(metric_name, direction)
        experiment = self.get_experiment(experiment_id)
        order = "ASC" if chosen == "min" else "DESC"
        seen_metrics: set[str] = set()
        with self._tracking_errors():
            token: str | None = None
            for _ in range(_MAX_PAGES):
                page = self.client.search_runs(
                    [str(experiment.experiment_id)],
                    max_results=_PAGE_SIZE,
                    order_by=[f"metrics.`{metric_name}` {order}", "attributes.start_time DESC"],
                    page_token=token,
                )
                for run in page:
                    value = run.data.metrics.get(metric_name)
                    if value is not None and not math.isnan(value):
                        return run
                    seen_metrics.update(run.data.metrics)
                token = page.token
                if not token:
                    break
        known = ", ".join(sorted(seen_metrics)) or "none"
        raise RunNotFoundError(
            f"no run in experiment {experiment.name!r} logged metric {metric_name!r}; "
            f"metrics logged there: {known}"
        )

    # ------------------------------------------------------------------ internals
    def _artifact_location(self, name: str) -> str | None:
        """Local stores keep artifacts under TITANS_HOME; a tracking server picks its own."""
        if urlparse(self.tracking_uri).scheme in _REMOTE_SCHEMES:
            return None
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"
        return (self.settings.artifact_root / slug).as_uri()

    def _search_runs(self, experiment_ids: list[str], order_by: list[str]) -> list[Run]:
        runs: list[Run] = []
        with self._tracking_errors():
            token: str | None = None
            for _ in range(_MAX_PAGES):
                page = self.client.search_runs(
                    experiment_ids, max_results=_PAGE_SIZE, order_by=order_by, page_token=token
                )
                runs.extend(page)
                token = page.token
                if not token:
                    break
        return runs

    def _log_artifact(self, run_id: str, kind: str, name: str, payload: Any) -> None:
        if kind == "file":
            self.client.log_artifact(run_id, str(payload), artifact_path=name)
        elif kind == "folder":
            self.client.log_artifacts(run_id, str(payload), artifact_path=name)
        elif kind == "dict":
            self.client.log_dict(run_id, payload, name)
        else:
            self.client.log_text(run_id, payload, name)

    @contextmanager
    def _tracking_errors(self) -> Iterator[None]:
        """Turn MLflow's own failures into one TitansError line naming the tracking URI."""
        try:
            yield
        except MlflowException as exc:
            first_line = str(exc.message).strip().splitlines()[0] if exc.message else repr(exc)
            raise TitansError(
                f"MLflow tracking at {self.tracking_uri} failed ({exc.error_code}): {first_line}; "
                "check that the store is reachable and TITANS_TRACKING_URI is right"
            ) from exc


def _ensure_sqlite_folder(tracking_uri: str) -> None:
    """SQLite cannot create the folder of its database file; do it for it."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        path = tracking_uri[len(prefix) :]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def _timestamps(millis: Sequence[int | None]) -> pd.Series:
    return pd.to_datetime(pd.Series(millis, dtype="Float64"), unit="ms", utc=True)


def _check_params(parameters: Mapping[str, Any]) -> dict[str, str]:
    params = {str(key): str(value) for key, value in parameters.items()}
    too_long = [key for key, value in params.items() if len(value) > _MAX_PARAM_CHARS]
    if too_long:
        raise InputError(
            f"parameter {too_long[0]!r} is longer than {_MAX_PARAM_CHARS} characters; "
            "log it as an artifact instead"
        )
    return params


def _check_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(value, numbers.Real):
            raise InputError(
                f"metric {key!r} has value {value!r} ({type(value).__name__}); "
                "metrics must be numbers (log text as a parameter or artifact)"
            )
        values[str(key)] = float(value)
    return values


def _plan_artifact(name: str, value: Any) -> tuple[str, str, Any]:
    """Check one artifact before any run exists: (kind, artifact name, payload)."""
    relative = PurePosixPath(str(name).replace("\\", "/"))
    if not str(name).strip() or relative.is_absolute() or ".." in relative.parts:
        raise InputError(
            f"artifact name {name!r} must be a relative name such as 'report' or 'eval/report'"
        )
    clean = str(relative)
    path = _existing_path(value)
    if isinstance(value, os.PathLike) and path is None:
        raise InputError(f"artifact {clean!r}: file {os.fspath(value)!r} does not exist")
    if path is not None:
        return ("folder" if path.is_dir() else "file", clean, path)
    if isinstance(value, Mapping | list):
        return ("dict", clean if relative.suffix else f"{clean}.json", value)
    if isinstance(value, str):
        return ("text", clean if relative.suffix else f"{clean}.txt", value)
    raise InputError(
        f"artifact {clean!r} is a {type(value).__name__}; pass a path, a dict/list or text"
    )


def _existing_path(value: Any) -> Path | None:
    if isinstance(value, os.PathLike):
        candidate = Path(os.fspath(value))
    elif isinstance(value, str) and value and "\n" not in value and len(value) < 4096:
        candidate = Path(value)
    else:
        return None
    try:
        return candidate if candidate.exists() else None
    except (OSError, ValueError):  # a name too long or with a NUL byte is text, not a path
        return None

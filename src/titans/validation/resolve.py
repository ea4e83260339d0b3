"""Resolve a model URI to its run and registered version, and load what validation needs."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from titans.config import Settings
from titans.errors import InputError, ModelNotFoundError, TitansError
from titans.models.base import TrainedModel
from titans.models.pyfunc import load_trained
from titans.models.train import HOLDOUT_FILENAME, configure_mlflow, load_holdout

_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)(?:/(?P<path>.+))?$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<suffix>[^/]+)$")
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)$")

_HOW_TO_LIST = "list versions with `titans registry list` or train one with `titans train`"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model URI points: the run that logged it and, if registered, name and version."""

    uri: str
    run_id: str
    registered_name: str | None = None
    version: str | None = None

    @property
    def load_uri(self) -> str:
        """A URI that cannot move under us (an alias resolved to its version)."""
        if self.registered_name is not None and self.version is not None:
            return f"models:/{self.registered_name}/{self.version}"
        return self.uri

    def to_dict(self) -> dict[str, str | None]:
        return {
            "model_uri": self.uri,
            "run_id": self.run_id,
            "registered_name": self.registered_name,
            "version": self.version,
        }


def resolve_model_uri(model_uri: str, client: MlflowClient) -> ResolvedModel:
    """The run (and registered version) behind ``models:/name/1``, ``models:/name@alias``,
    ``models:/name/latest``, ``models:/name/Production`` (stage = alias), ``models:/m-<id>``
    or ``runs:/<run_id>/model``.

    >>> resolve_model_uri("s3://bucket/model", None)  # type: ignore[arg-type]
    Traceback (most recent call last):
    ...
    titans.errors.InputError: 's3://bucket/model' is not a model URI validation understands; \
use models:/NAME/VERSION, models:/NAME@ALIAS, models:/m-ID or runs:/RUN_ID/model
    """
    uri = model_uri.strip()
    try:
        if match := _RUNS_URI.match(uri):
            run_id = match["run_id"]
            client.get_run(run_id)
            return ResolvedModel(uri=uri, run_id=run_id)
        if match := _LOGGED_MODEL_URI.match(uri):
            logged = client.get_logged_model(match["model_id"])
            if not logged.source_run_id:
                raise ModelNotFoundError(
                    f"{uri} was not logged from a run, so it has no holdout to validate on; "
                    "log it with `titans train`"
                )
            return ResolvedModel(uri=uri, run_id=logged.source_run_id)
        if match := _ALIAS_URI.match(uri):
            return _from_alias(uri, match["name"], match["alias"], client)
        if match := _VERSION_URI.match(uri):
            name, suffix = match["name"], match["suffix"]
            if suffix.isdigit():
                mv = client.get_model_version(name, suffix)
                return _from_version(uri, name, str(mv.version), mv.run_id)
            if suffix.lower() == "latest":
                return _latest(uri, name, client)
            # MLflow 3 retires stages: this project keeps them as aliases of the same name
            return _from_alias(uri, name, suffix.lower(), client)
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"{uri} does not exist ({_first_line(exc)}); {_HOW_TO_LIST}"
        ) from exc
    raise InputError(
        f"{model_uri!r} is not a model URI validation understands; use models:/NAME/VERSION, "
        "models:/NAME@ALIAS, models:/m-ID or runs:/RUN_ID/model"
    )


def _from_alias(uri: str, name: str, alias: str, client: MlflowClient) -> ResolvedModel:
    mv = client.get_model_version_by_alias(name, alias)
    return _from_version(uri, name, str(mv.version), mv.run_id)


def _latest(uri: str, name: str, client: MlflowClient) -> ResolvedModel:
    client.get_registered_model(name)  # raises when the name is unknown
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        raise ModelNotFoundError(f"{uri}: registered model {name!r} has no version; {_HOW_TO_LIST}")
    latest = max(versions, key=lambda v: int(v.version))
    return _from_version(uri, name, str(latest.version), latest.run_id)


def _from_version(uri: str, name: str, version: str, run_id: str | None) -> ResolvedModel:
    if not run_id:
        raise ModelNotFoundError(
            f"{uri}: version {version} of {name!r} was not logged from a run, so it has no "
            "holdout to validate on; register a model logged by `titans train`"
        )
    return ResolvedModel(uri=uri, run_id=run_id, registered_name=name, version=version)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


@dataclass
class LoadedModel:
    """A resolved model, its fitted TrainedModel and the held-out rows of its run."""

    resolved: ResolvedModel
    trained: TrainedModel
    holdout: pd.DataFrame


def load_model(model_uri: str, settings: Settings) -> LoadedModel:
    """Resolve ``model_uri``, load its TrainedModel and its run's holdout (clear errors)."""
    client = configure_mlflow(settings)
    resolved = resolve_model_uri(model_uri, client)
    trained = load_trained_model(resolved.load_uri)
    return LoadedModel(
        resolved=resolved, trained=trained, holdout=load_run_holdout(resolved, settings)
    )


def load_trained_model(model_uri: str) -> TrainedModel:
    """load_trained with a one-line error when the artifact is missing or unreadable."""
    try:
        return load_trained(model_uri)
    except TitansError:
        raise
    except Exception as exc:  # MLflow, pickle and I/O all fail differently; one message for all
        raise ModelNotFoundError(
            f"could not load {model_uri} ({type(exc).__name__}: {_first_line(exc)}); "
            "check the URI and the artifact store, or re-log the model with `titans train`"
        ) from exc


def load_run_holdout(resolved: ResolvedModel, settings: Settings) -> pd.DataFrame:
    """The rows the run held out of training, or an InputError naming the run."""
    try:
        return load_holdout(resolved.run_id, settings)
    except Exception as exc:
        raise InputError(
            f"{resolved.uri}: run {resolved.run_id} has no readable {HOLDOUT_FILENAME} "
            f"({_first_line(exc)}); validate a model logged by `titans train`"
        ) from exc

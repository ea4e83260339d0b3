"""Model store: what the registry says is in production, loaded, warmed and hot-swapped.

Each configured model key resolves ``models:/<name>@production`` to a concrete version; a new
version is loaded and warmed (one prediction on a canned transaction) *before* it replaces the
old one, so a request never meets a cold or broken model. The swap replaces one immutable
:class:`LoadedModel` in a dict under a lock: a request takes its LoadedModel once, at its start,
and finishes on it even if a newer version is swapped in meanwhile.

When the registry is unreachable or a new artifact fails to load or warm up, the last good
model keeps serving; :meth:`ModelStore.status` reports ``degraded`` with the reasons, and the
Prometheus metrics ``titans_registry_up`` and ``titans_model_load_failures_total`` say so.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prometheus_client import CollectorRegistry, Counter, Gauge

from titans.config import MODEL_KEYS, Settings
from titans.models.base import TrainedModel
from titans.models.fast import FastPredictor, fast_predictor
from titans.models.inputs import typed_frame
from titans.models.pyfunc import load_trained
from titans.models.train import configure_mlflow

log = logging.getLogger(__name__)

PRODUCTION_ALIAS = "production"
#: what /models calls a version held in memory for an A/B test
CHALLENGER_ALIAS = "challenger"

#: the transaction every new model must score before it is swapped in
WARMUP_TRANSACTION: dict[str, Any] = {
    "date": "2024-03-01",
    "type": "Expense",
    "description": "Office supplies from Staples",
    "amount": -42.5,
    "payment_method": "Credit Card",
    "reference": "WARMUP-0001",
    "status": "Completed",
    "category": None,
    "receipt_url": None,
}

#: loads the TrainedModel from a model version's artifact location
Loader = Callable[[str], TrainedModel]
#: registered name -> versions wanted in memory besides production (A/B challengers)
WantedVersions = Callable[[], Mapping[str, Iterable[str]]]


@dataclass(frozen=True)
class LoadedModel:
    """One model version in memory, ready to predict; never mutated after it is built."""

    name: str
    key: str
    version: str
    alias: str
    loaded_at: datetime
    flavour: str
    trained: TrainedModel
    #: the compiled single-row path (None: every request goes through ``trained.predict``)
    fast: FastPredictor | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def describe(self) -> dict[str, str]:
        """What /models shows for this model."""
        return {
            "model": self.key,
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "loaded_at": self.loaded_at.isoformat(),
            "flavour": self.flavour,
            "single_row_path": "compiled" if self.fast is not None else "batch",
        }


@dataclass(frozen=True)
class StoreStatus:
    """``ok`` when every configured model is loaded and nothing failed since, else degraded."""

    ready: bool
    registry_up: bool
    reasons: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def status(self) -> str:
        return "ok" if self.ready and not self.reasons else "degraded"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ready": self.ready,
            "registry_up": self.registry_up,
            "reasons": list(self.reasons),
            "missing": list(self.missing),
        }


class ModelStore:
    """Resolves, loads, warms and atomically swaps the production version of each model."""

    def __init__(
        self,
        settings: Settings | None = None,
        model_keys: Iterable[str] = MODEL_KEYS,
        *,
        client: MlflowClient | None = None,
        registry: CollectorRegistry | None = None,
        loader: Loader = load_trained,
        wanted_versions: WantedVersions | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.model_keys: tuple[str, ...] = tuple(model_keys)
        unknown = [k for k in self.model_keys if k not in MODEL_KEYS]
        if unknown:
            from titans.errors import ConfigError

            raise ConfigError(
                f"unknown model key(s) {unknown}; choose from {', '.join(MODEL_KEYS)}"
            )
        if client is None:
            client = configure_mlflow(self.settings)
        #: the registry client; replace it to point the store at another tracking server
        self.client = client
        self.loader = loader
        #: versions to hold besides production (the A/B tests' arms); read on every refresh
        self.wanted_versions = wanted_versions
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry_up = Gauge(
            "titans_registry_up",
            "1 when the last poll of the model registry succeeded, else 0.",
            registry=self.registry,
        )
        self.load_failures = Counter(
            "titans_model_load_failures_total",
            "New production versions that failed to load or warm up (the old one kept serving).",
            ["model"],
            registry=self.registry,
        )
        for key in self.model_keys:
            self.load_failures.labels(model=key)
        self.registry_poll_failures = Counter(
            "titans_registry_poll_failures_total",
            "Polls of the model registry that failed (the loaded models kept serving).",
            registry=self.registry,
        )
        self._models: dict[str, LoadedModel] = {}
        self._swap_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._registry_error: str | None = None
        self._failures: dict[str, str] = {}  # key -> why its current production is not served
        self._failed_versions: dict[str, str] = {}  # key -> version that failed (not retried)
        self._no_alias: set[str] = set()
        # (key, version) -> challenger in memory / why it could not be loaded
        self._challengers: dict[tuple[str, str], LoadedModel] = {}
        self._challenger_failures: dict[tuple[str, str], str] = {}
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ reading

    def get(self, key: str) -> LoadedModel | None:
        """The LoadedModel serving ``key`` right now (take it once per request), or None."""
        return self._models.get(key)

    def get_version(self, key: str, version: str) -> LoadedModel | None:
        """The LoadedModel of ``key`` at ``version``: production or a loaded challenger."""
        serving = self._models.get(key)
        if serving is not None and serving.version == version:
            return serving
        return self._challengers.get((key, version))

    def challengers(self) -> list[LoadedModel]:
        """Versions held for A/B tests besides production, in configured order."""
        held = self._challengers
        order = {k: i for i, k in enumerate(self.model_keys)}
        return sorted(held.values(), key=lambda m: (order[m.key], int_or_text(m.version)))

    def loaded(self) -> list[LoadedModel]:
        """Every model in memory, in configured order."""
        models = self._models
        return [models[k] for k in self.model_keys if k in models]

    def status(self) -> StoreStatus:
        """Ready when every configured model is loaded; reasons for anything that is off."""
        # copies (atomic under the GIL): a refresh may update these while we read
        models, failures, no_alias = self._models, dict(self._failures), set(self._no_alias)
        registry_error = self._registry_error
        challenger_failures = list(self._challenger_failures.values())
        missing = tuple(k for k in self.model_keys if k not in models)
        reasons: list[str] = []
        if registry_error is not None:
            reasons.append(registry_error)
        for key in self.model_keys:
            name = self.settings.registered_name(key)
            if key in failures:
                reasons.append(failures[key])
            elif key in no_alias:
                serving = models.get(key)
                tail = (
                    f"; still serving version {serving.version}"
                    if serving is not None
                    else "; promote a version with `titans registry promote`"
                )
                reasons.append(f"{name} has no production alias{tail}")
            elif key not in models:
                reasons.append(f"{name} is not loaded yet")
        reasons.extend(challenger_failures)
        return StoreStatus(
            ready=not missing,
            registry_up=registry_error is None,
            reasons=tuple(reasons),
            missing=missing,
        )

    # ------------------------------------------------------------------ loading

    def refresh(self) -> dict[str, str]:
        """Poll the registry for every key; load only versions that changed.

        Returns what happened per key (``loaded 3``, ``unchanged 2``, ``failed: ...``, ...).
        Never raises for registry or artifact trouble: it is recorded and reported instead.
        """
        return self._refresh(force=False)

    def reload(self) -> dict[str, str]:
        """Like :meth:`refresh`, but retry versions that failed before (the admin route)."""
        return self._refresh(force=True)

    def _refresh(self, *, force: bool) -> dict[str, str]:
        outcome: dict[str, str] = {}
        with self._refresh_lock:
            registry_error: str | None = None
            for key in self.model_keys:
                name = self.settings.registered_name(key)
                try:
                    version = self._production_version(name)
                except Exception as exc:
                    registry_error = (
                        f"model registry at {_uri(self.client)} is unreachable "
                        f"({type(exc).__name__}: {_first_line(exc)}); serving the last good models"
                    )
                    outcome[key] = "registry unreachable"
                    break
                outcome[key] = self._update(key, name, version, force=force)
            if registry_error is None:
                outcome.update(self._update_challengers(force=force))
            self._registry_error = registry_error
            self.registry_up.set(0 if registry_error else 1)
            if registry_error:
                self.registry_poll_failures.inc()
        return outcome

    def _production_version(self, name: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(name, PRODUCTION_ALIAS).version)
        except MlflowException as exc:
            if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                return None
            raise

    def _update(self, key: str, name: str, version: str | None, *, force: bool) -> str:
        current = self._models.get(key)
        if version is None:
            self._no_alias.add(key)
            self._failures.pop(key, None)
            return "no production alias"
        self._no_alias.discard(key)
        if current is not None and current.version == version:
            self._failures.pop(key, None)
            self._failed_versions.pop(key, None)
            return f"unchanged {version}"
        if not force and self._failed_versions.get(key) == version:
            return f"failed before {version}"
        try:
            loaded = self._load(key, name, version, PRODUCTION_ALIAS)
        except Exception as exc:
            self.load_failures.labels(model=key).inc()
            self._failed_versions[key] = version
            still = (
                f"; still serving version {current.version}"
                if current is not None
                else "; nothing serving"
            )
            self._failures[key] = (
                f"{name} version {version} failed to load or warm up "
                f"({type(exc).__name__}: {_first_line(exc)}){still}"
            )
            log.warning("%s", self._failures[key])
            return f"failed: {self._failures[key]}"
        with self._swap_lock:
            models = dict(self._models)
            models[key] = loaded
            self._models = models  # one reference assignment: readers see old or new
        self._failures.pop(key, None)
        self._failed_versions.pop(key, None)
        log.info("serving %s version %s", name, version)
        return f"loaded {version}"

    def _load(self, key: str, name: str, version: str, alias: str) -> LoadedModel:
        """Load, warm and compile one version; raises whatever loading or the warm-up raises."""
        # the artifact's own location: loading must not depend on MLflow's global URIs
        trained = self.loader(self.client.get_model_version_download_uri(name, version))
        warmed = warm_up(trained)
        return LoadedModel(
            name=name,
            key=key,
            version=version,
            alias=alias,
            loaded_at=datetime.now(UTC),
            flavour=flavour_of(trained),
            trained=trained,
            fast=compile_single_row(trained, warmed),
        )

    def _wanted(self) -> dict[str, set[str]]:
        """Model key -> challenger versions the A/B tests want (production excluded)."""
        if self.wanted_versions is None:
            return {}
        try:
            wanted = self.wanted_versions()
        except Exception:  # the A/B store being down must not stop production refreshes
            log.warning("could not read the versions A/B tests want", exc_info=True)
            return {k: {v for (kk, v) in self._challengers if kk == k} for k in self.model_keys}
        by_name = {self.settings.registered_name(k): k for k in self.model_keys}
        out: dict[str, set[str]] = {}
        for name, versions in wanted.items():
            key = by_name.get(name)
            if key is None:
                continue
            serving = self._models.get(key)
            out[key] = {str(v) for v in versions} - ({serving.version} if serving else set())
        return out

    def _update_challengers(self, *, force: bool) -> dict[str, str]:
        """Load the challenger versions running A/B tests need; drop those no longer needed."""
        wanted = self._wanted()
        outcome: dict[str, str] = {}
        keep = {(k, v) for k, versions in wanted.items() for v in versions}
        for key, version in sorted(keep - set(self._challengers)):
            name = self.settings.registered_name(key)
            if not force and (key, version) in self._challenger_failures:
                continue
            try:
                loaded = self._load(key, name, version, CHALLENGER_ALIAS)
            except Exception as exc:
                self.load_failures.labels(model=key).inc()
                self._challenger_failures[(key, version)] = (
                    f"{name} version {version} (an A/B test arm) failed to load or warm up "
                    f"({type(exc).__name__}: {_first_line(exc)}); production answers its traffic"
                )
                log.warning("%s", self._challenger_failures[(key, version)])
                outcome[f"{key}@{version}"] = "failed"
                continue
            self._challenger_failures.pop((key, version), None)
            with self._swap_lock:
                self._challengers = {**self._challengers, (key, version): loaded}
            outcome[f"{key}@{version}"] = f"loaded challenger {version}"
            log.info("holding %s version %s for an A/B test", name, version)
        gone = set(self._challengers) - keep
        if gone:
            with self._swap_lock:
                self._challengers = {k: m for k, m in self._challengers.items() if k not in gone}
            for key, version in sorted(gone):
                outcome[f"{key}@{version}"] = "released challenger"
        for stale in set(self._challenger_failures) - keep:
            self._challenger_failures.pop(stale, None)
        return outcome

    # ------------------------------------------------------------------ polling

    def start_polling(self, interval: float | None = None) -> None:
        """Refresh every ``interval`` seconds (default: settings) in a daemon thread."""
        seconds = self.settings.model_poll_seconds if interval is None else interval
        if seconds <= 0 or (self._poller is not None and self._poller.is_alive()):
            return
        self._stop.clear()

        def poll() -> None:
            while not self._stop.wait(seconds):
                try:
                    self.refresh()
                except Exception:  # a bug must not kill the poller; refresh records trouble
                    log.exception("model store refresh failed")

        self._poller = threading.Thread(target=poll, name="titans-model-poller", daemon=True)
        self._poller.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the polling thread (waits at most ``timeout`` seconds for it)."""
        self._stop.set()
        poller = self._poller
        if poller is not None:
            poller.join(timeout)
        self._poller = None


def compile_single_row(trained: TrainedModel, warmed: pd.DataFrame) -> FastPredictor | None:
    """The model's compiled single-row path, checked against ``warmed``, the batch path's
    answer to the warm-up transaction.

    None when the model has none, or when compiling or its warm-up answer disagrees with the
    batch path: then requests take ``trained.predict``, which is slower but always right.
    """
    try:
        fast = fast_predictor(trained)
        if fast is None:
            return None
        expected = warmed.iloc[0].to_dict()
        got = fast.predict_one(WARMUP_TRANSACTION)
    except Exception:
        log.warning("no compiled single-row path for %s", trained.spec_name, exc_info=True)
        return None
    if list(got) != list(expected) or any(
        not _same(got[column], expected[column]) for column in expected
    ):
        log.warning(
            "the compiled single-row path of %s disagrees with its batch path on the warm-up "
            "transaction; serving through the batch path",
            trained.spec_name,
        )
        return None
    return fast


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def int_or_text(version: str) -> tuple[int, str]:
    """Sort key: numeric versions in numeric order.

    >>> sorted(["10", "9", "x"], key=int_or_text)
    ['9', '10', 'x']
    """
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def warm_up(trained: TrainedModel) -> pd.DataFrame:
    """One prediction on the canned transaction; raises whatever the model raises, and
    ValueError when a numeric output is NaN or infinite (such a model must not serve)."""
    out = trained.predict(typed_frame(pd.DataFrame([WARMUP_TRANSACTION])))
    if not isinstance(out, pd.DataFrame) or out.empty:
        raise ValueError("warm-up prediction returned no rows")
    numeric = out.select_dtypes("number")
    bad = [str(c) for c in numeric.columns if not np.isfinite(numeric[c].to_numpy(float)).all()]
    if bad:
        raise ValueError(f"warm-up prediction holds NaN/inf in {', '.join(bad)}")
    return out


def flavour_of(trained: TrainedModel) -> str:
    """The library that computes the predictions (``sklearn``, ``onnxruntime``, ...)."""
    state = trained.state
    values = state.values() if isinstance(state, dict) else [state]
    for value in values:
        declared = getattr(value, "flavour", None)  # a stand-in naming its runtime (ONNX)
        if isinstance(declared, str):
            return declared
        root = type(value).__module__.split(".")[0]
        if root not in {"builtins", "numpy", "pandas"}:
            return root
    return "python"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _uri(client: MlflowClient) -> str:
    """The client's tracking URI without credentials (it ends up on the open /ready route)."""
    from urllib.parse import urlsplit, urlunsplit

    uri = str(getattr(client, "tracking_uri", "the configured tracking URI"))
    parts = urlsplit(uri)
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1])
    return urlunsplit(parts)

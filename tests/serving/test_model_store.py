"""ModelStore on a real MLflow registry: load + warm, hot swap, registry outage, broken artifacts.

Two versions of titans-amount are trained once per module (version 1 in production); each test
works on its own copy of that registry database and its own ops store.
"""

from __future__ import annotations

import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from _support.serving import TRANSACTION, copy_registry, promote, serving_settings
from titans.config import Settings
from titans.data.synth import generate
from titans.models.base import TrainedModel
from titans.models.inputs import typed_frame
from titans.models.pyfunc import TRAINED_MODEL_ARTIFACT, TitansPyfuncModel, save_trained
from titans.models.train import configure_mlflow, ensure_experiment, train_models
from titans.serving.app import create_app
from titans.serving.auth import generate_api_key
from titans.serving.model_store import ModelStore

NAME = "titans-amount"
#: the API answers only requests with a valid key (roles predict)
RAW_KEY, API_KEY = generate_api_key("tests", ["predict"])
AUTH = {"Authorization": f"Bearer {RAW_KEY}"}


def _settings(home: Path) -> Settings:
    return serving_settings(home, [API_KEY])


@dataclass
class Template:
    home: Path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """titans-amount versions 1 (in production) and 2 (not promoted)."""
    home = tmp_path_factory.mktemp("serving-store")
    settings = _settings(home)
    train_models(generate(3_000, seed=1), models=["amount"], seed=1, settings=settings)
    train_models(generate(3_000, seed=1), models=["amount"], seed=2, settings=settings)
    promote(settings, NAME, "1")
    return Template(home)


@pytest.fixture
def settings_(template: Template, tmp_path: Path) -> Settings:
    """Settings on a fresh copy of the template registry (artifacts shared, read-only)."""
    return _settings(copy_registry(template.home, tmp_path / "home"))


def _client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def _store(settings: Settings) -> ModelStore:
    return ModelStore(settings, ("amount",))


def _sample(store: ModelStore, name: str, **labels: str) -> float | None:
    return store.registry.get_sample_value(name, labels or None)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _register_broken(settings: Settings, kind: str) -> str:
    """A new titans-amount version whose artifact is corrupt or fails at warm-up; the
    production alias is pointed at it directly (the promotion gate would refuse it)."""
    client = configure_mlflow(settings)
    experiment_id = ensure_experiment(client, "broken-artifacts", settings)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=experiment_id):
        directory = Path(tmp)
        if kind == "corrupt":
            path = directory / "trained_model.pkl"
            path.write_bytes(b"this is not a pickle")
        else:  # loads fine, but predict raises: the model was never fitted
            path = save_trained(TrainedModel(spec_name="amount", state=None), directory)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=TitansPyfuncModel(),
            artifacts={TRAINED_MODEL_ARTIFACT: str(path)},
        )
    version = str(mlflow.register_model(info.model_uri, NAME).version)
    client.set_registered_model_alias(NAME, "production", version)
    return version


def test_refresh_loads_and_warms_the_production_version(settings_: Settings) -> None:
    store = _store(settings_)
    assert store.get("amount") is None
    assert store.refresh() == {"amount": "loaded 1"}
    loaded = store.get("amount")
    assert loaded is not None
    assert (loaded.name, loaded.version, loaded.alias, loaded.flavour) == (
        NAME,
        "1",
        "production",
        "sklearn",
    )
    assert store.status().status == "ok"
    assert _sample(store, "titans_registry_up") == 1.0
    # nothing changed: the same object keeps serving, nothing is reloaded
    assert store.refresh() == {"amount": "unchanged 1"}
    assert store.get("amount") is loaded


def test_refresh_swaps_to_a_new_version_while_a_request_finishes_on_the_old(
    settings_: Settings,
) -> None:
    store = _store(settings_)
    app = create_app(settings_, model_store=store, poll=False)
    client = TestClient(app, headers=AUTH)
    assert client.get("/models").json()["models"][0]["version"] == "1"
    in_flight = store.get("amount")  # what a request took at its start
    assert in_flight is not None

    promote(settings_, NAME, "2")
    assert store.refresh() == {"amount": "loaded 2"}

    # the request that started on version 1 completes on version 1
    out = in_flight.trained.predict(typed_frame(pd.DataFrame([TRANSACTION])))
    assert in_flight.version == "1" and len(out) == 1 and out["prediction"].iloc[0] > 0
    # new requests see version 2
    (served,) = client.get("/models").json()["models"]
    assert (served["name"], served["version"]) == (NAME, "2")
    response = client.post("/predict/amount", json=TRANSACTION)
    assert response.status_code == 200 and response.json()["version"] == "2"


def test_a_registry_outage_keeps_the_last_good_model_and_reports_degraded(
    settings_: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    store = _store(settings_)
    store.refresh()
    healthy_client = store.client
    dead = f"http://127.0.0.1:{_closed_port()}"
    store.client = MlflowClient(tracking_uri=dead, registry_uri=dead)

    assert store.refresh() == {"amount": "registry unreachable"}
    loaded = store.get("amount")
    assert loaded is not None and loaded.version == "1"
    status = store.status()
    assert status.status == "degraded" and status.ready and not status.registry_up
    assert any("unreachable" in r and dead in r for r in status.reasons), status.reasons
    assert _sample(store, "titans_registry_up") == 0.0
    assert _sample(store, "titans_registry_poll_failures_total") == 1.0

    app = create_app(settings_, model_store=store, poll=False)
    client = TestClient(app, headers=AUTH)
    ready = client.get("/ready")  # refresh in create_app failed again: still serving
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert client.post("/predict/amount", json=TRANSACTION).json()["version"] == "1"

    store.client = healthy_client  # the registry is back
    store.refresh()
    assert store.status().status == "ok"
    assert _sample(store, "titans_registry_up") == 1.0


@pytest.mark.parametrize("kind", ["corrupt", "fails_warm_up"])
def test_a_broken_artifact_is_not_swapped_in(settings_: Settings, kind: str) -> None:
    store = _store(settings_)
    store.refresh()
    version = _register_broken(settings_, kind)

    outcome = store.refresh()
    assert outcome["amount"].startswith("failed:")
    loaded = store.get("amount")
    assert loaded is not None and loaded.version == "1"  # the last good model keeps serving
    assert _sample(store, "titans_model_load_failures_total", model="amount") == 1.0
    status = store.status()
    assert status.status == "degraded" and status.ready
    (reason,) = status.reasons
    assert f"version {version} failed to load or warm up" in reason
    assert "still serving version 1" in reason
    # polling does not hammer the broken version; the admin reload retries it
    assert store.refresh()["amount"] == f"failed before {version}"
    assert _sample(store, "titans_model_load_failures_total", model="amount") == 1.0
    store.reload()
    assert _sample(store, "titans_model_load_failures_total", model="amount") == 2.0


def test_no_production_alias_means_not_loaded_and_not_ready(settings_: Settings) -> None:
    _client(settings_).delete_registered_model_alias(NAME, "production")
    store = _store(settings_)
    assert store.refresh() == {"amount": "no production alias"}
    status = store.status()
    assert not status.ready and status.missing == ("amount",)
    assert status.reasons == (
        f"{NAME} has no production alias; promote a version with `titans registry promote`",
    )


def test_polling_picks_up_a_promotion_and_stops(settings_: Settings) -> None:
    store = _store(settings_)
    store.refresh()
    promote(settings_, NAME, "2")
    store.start_polling(interval=0.05)
    try:
        for _ in range(200):  # at most ~10 s
            loaded = store.get("amount")
            if loaded is not None and loaded.version == "2":
                break
            time.sleep(0.05)
    finally:
        store.stop()
    loaded = store.get("amount")
    assert loaded is not None and loaded.version == "2"

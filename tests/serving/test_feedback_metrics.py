"""Prediction log rows, feedback, /metrics and A/B arms of the prediction API, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from _support.serving import TRANSACTION, serving_settings, train_and_promote_all
from titans.config import Settings
from titans.experiments.ab_testing import ABTestingFramework
from titans.serving.app import create_app
from titans.serving.auth import generate_api_key
from titans.store import Store
from titans.store.models import Feedback, Prediction

RAW, KEY = generate_api_key("svc", ["predict"])
AUTH = {"Authorization": f"Bearer {RAW}"}


def _settings(home: Path, **overrides: Any) -> Settings:
    overrides.setdefault("prediction_log_flush_seconds", 0.05)
    return serving_settings(home, [KEY], model_poll_seconds=0, **overrides)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with version 1 of every model in production."""
    home = tmp_path_factory.mktemp("feedback-metrics")
    train_and_promote_all(_settings(home), rows=2_000, seed=5)
    return home


def _rows(settings: Settings, ids: list[str]) -> list[Prediction]:
    with Store(settings).session() as session:
        rows = session.scalars(select(Prediction).where(Prediction.prediction_id.in_(ids))).all()
        session.expunge_all()
    return list(rows)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples: dict[Any, float], metric: str, **labels: str) -> float:
    return samples[(metric, tuple(sorted(labels.items())))]


def test_each_prediction_is_one_row_after_shutdown_drains_the_log(home: Path) -> None:
    settings = _settings(home, prediction_log_flush_seconds=30.0)  # only the drain writes
    with TestClient(create_app(settings, poll=False), headers=AUTH) as client:
        single = client.post("/predict/category", json=TRANSACTION).json()
        batch = client.post(
            "/predict/batch", json={"model": "amount", "transactions": [TRANSACTION] * 5}
        ).json()
        assert _rows(settings, [single["prediction_id"]]) == []  # still queued
    batch_ids = [item["prediction_id"] for item in batch["predictions"]]
    (row,) = _rows(settings, [single["prediction_id"]])
    assert (row.model_name, row.model_version, row.alias, row.arm, row.entity_id) == (
        "titans-category",
        "1",
        "production",
        None,
        "customer-7",
    )
    assert row.features["description"] == TRANSACTION["description"]
    assert row.features["amount"] == TRANSACTION["amount"]
    assert row.prediction["prediction"] == single["prediction"]["prediction"]
    assert row.score == pytest.approx(single["prediction"]["probability"])
    assert row.latency_ms > 0
    rows = _rows(settings, batch_ids)
    assert sorted(r.prediction_id for r in rows) == sorted(batch_ids)
    by_id = {r.prediction_id: r for r in rows}
    for item in batch["predictions"]:
        assert by_id[item["prediction_id"]].score == pytest.approx(item["prediction"]["prediction"])


def test_feedback_right_after_a_prediction_is_stored_once_and_joins_it(home: Path) -> None:
    settings = _settings(home)
    with TestClient(create_app(settings, poll=False), headers=AUTH) as client:
        prediction_id = client.post("/predict/category", json=TRANSACTION).json()["prediction_id"]
        actual = {"category": "Software"}
        stored = client.post("/feedback", json={"prediction_id": prediction_id, "actual": actual})
        assert stored.status_code == 200, stored.text
        assert stored.json() == {"prediction_id": prediction_id, "status": "stored"}
        again = client.post("/feedback", json={"prediction_id": prediction_id, "actual": actual})
        assert again.status_code == 409
        unknown = client.post("/feedback", json={"prediction_id": "f" * 32, "actual": actual})
        assert unknown.status_code == 404
        assert "no prediction with id" in unknown.json()["detail"]
    with Store(settings).session() as session:
        joined = session.execute(
            select(Prediction.model_name, Feedback.actual)
            .join(Feedback, Feedback.prediction_id == Prediction.prediction_id)
            .where(Prediction.prediction_id == prediction_id)
        ).all()
    assert [tuple(r) for r in joined] == [("titans-category", actual)]


def test_metrics_count_requests_predictions_errors_and_what_is_serving(home: Path) -> None:
    settings = _settings(home)
    with TestClient(create_app(settings, poll=False), headers=AUTH) as client:
        category = client.post("/predict/category", json=TRANSACTION).json()
        for _ in range(2):
            client.post("/predict/amount", json=TRANSACTION)
        client.post("/predict/amount", json=TRANSACTION, headers={"Authorization": "Bearer no"})
        client.post("/predict/amount", json={**TRANSACTION, "amount": "lots"})
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = _samples(response.text)
    predicted = category["prediction"]["prediction"]
    category_labels = {"model": "category", "version": "1", "arm": "none"}
    assert (
        _value(samples, "titans_predictions_total", **category_labels, predicted_class=predicted)
        == 1
    )
    amount_labels = {"model": "amount", "version": "1", "arm": "none", "predicted_class": ""}
    assert _value(samples, "titans_predictions_total", **amount_labels) == 2
    duration = {"route": "/predict/amount", "model": "amount", "version": "1", "status": "200"}
    assert _value(samples, "titans_request_duration_seconds_count", **duration) == 2
    assert _value(samples, "titans_request_duration_seconds_sum", **duration) > 0
    refused = {"route": "/predict/amount", "model": "", "version": "", "status": "401"}
    assert _value(samples, "titans_request_duration_seconds_count", **refused) == 1
    assert _value(samples, "titans_errors_total", type="unauthenticated") == 1
    assert _value(samples, "titans_errors_total", type="invalid_input") == 1
    for key in ("category", "amount", "anomaly", "cashflow"):
        info = {"model": key, "name": f"titans-{key}", "version": "1", "alias": "production"}
        assert _value(samples, "titans_model_info", **info) == 1
    assert _value(samples, "titans_registry_up") == 1
    assert _value(samples, "titans_prediction_log_queue_depth") >= 0
    assert _value(samples, "titans_prediction_log_dropped_total", reason="queue_full") == 0
    assert ("titans_prediction_log_written_total", ()) in samples
    assert any(name == "titans_model_load_failures_total" for name, _ in samples)
    # raw paths never become labels: an unknown route is "unmatched"
    routes = {dict(labels).get("route") for name, labels in samples if "duration" in name}
    assert routes <= {"/predict/category", "/predict/amount", "unmatched", "/metrics"}


def test_a_running_ab_test_records_arm_a_while_b_is_not_loaded(home: Path) -> None:
    settings = _settings(home)
    framework = ABTestingFramework(settings)
    framework.setup_ab_test("cat-ab", ("titans-category", "1"), ("titans-category", "2"), 0.5)
    try:
        with TestClient(create_app(settings, poll=False), headers=AUTH) as client:
            bodies = [
                client.post("/predict/category", json={**TRANSACTION, "entity_id": f"c-{i}"}).json()
                for i in range(10)
            ]
            amount = client.post("/predict/amount", json=TRANSACTION).json()
            samples = _samples(client.get("/metrics").text)
    finally:
        framework.stop_test("cat-ab", "test over")
    assert {(b["arm"], b["version"]) for b in bodies} == {("A", "1")}
    assert amount["arm"] is None  # no test for the amount model
    rows = _rows(settings, [b["prediction_id"] for b in bodies])
    assert len(rows) == 10 and {r.arm for r in rows} == {"A"}
    arm_a = [
        v
        for (name, labels), v in samples.items()
        if name == "titans_predictions_total" and dict(labels)["arm"] == "A"
    ]
    assert sum(arm_a) == 10


def test_the_api_serves_when_the_ops_store_is_down_and_counts_what_it_could_not_log(
    home: Path,
) -> None:
    settings = _settings(
        home,
        database_url_override="postgresql+psycopg://titans@127.0.0.1:1/titans",
        prediction_log_drain_timeout_seconds=0.5,
    )
    app = create_app(settings, poll=False)
    with TestClient(app, headers=AUTH) as client:
        response = client.post("/predict/amount", json=TRANSACTION)
        assert response.status_code == 200
        feedback = client.post(
            "/feedback", json={"prediction_id": "f" * 32, "actual": {"amount": 1.0}}
        )
        assert feedback.status_code == 503
        assert "ops store is unavailable" in feedback.json()["detail"]
    registry = app.state.metrics_registry
    dropped = registry.get_sample_value(
        "titans_prediction_log_dropped_total", {"reason": "shutdown"}
    )
    assert dropped == 1
    assert registry.get_sample_value("titans_prediction_log_write_failures_total") >= 1

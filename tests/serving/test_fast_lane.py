"""The fast lane answers ordinary single-transaction predictions before FastAPI routes them:
its answers, refusals, rate limits and metrics are the FastAPI routes' own.

A content type of ``application/merge-patch+json`` is JSON to FastAPI but not to the lane, so
the same request sent with it takes the FastAPI route: the tests compare the two paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from _support.serving import TRANSACTION, bearer, serving_settings, train_and_promote_all
from titans.config import Settings
from titans.serving.app import create_app
from titans.serving.auth import generate_api_key

RAW, KEY = generate_api_key("svc", ["predict"])
ADMIN_RAW, ADMIN_KEY = generate_api_key("ops", ["admin"])
LANE = {"content-type": "application/json"}
ROUTE = {"content-type": "application/merge-patch+json"}


def _settings(home: Path, **overrides: Any) -> Settings:
    return serving_settings(
        home,
        [KEY, ADMIN_KEY],
        model_poll_seconds=0,
        prediction_log_flush_seconds=0.05,
        **overrides,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("fast-lane")
    train_and_promote_all(_settings(home), rows=2_000, seed=5)
    return home


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(home), poll=False)) as test_client:
        yield test_client


def _post(client: TestClient, model: str, body: Any, headers: dict[str, str]) -> Any:
    import json

    return client.post(f"/predict/{model}", content=json.dumps(body), headers=headers)


def _without_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "prediction_id"}


TRANSACTIONS = [
    TRANSACTION,
    {**TRANSACTION, "description": "never seen before", "reference": None, "amount": -0.01},
    {**TRANSACTION, "type": "Income", "amount": 1_250.0, "date": "2024-02-29"},
    {"date": "2023-12-31", "type": "Expense", "amount": -9_999_999.0},
]


@pytest.mark.parametrize("model", ["category", "amount", "anomaly"])
def test_the_lane_answers_as_the_fastapi_route(client: TestClient, model: str) -> None:
    for transaction in TRANSACTIONS:
        lane = _post(client, model, transaction, {**bearer(RAW), **LANE})
        route = _post(client, model, transaction, {**bearer(RAW), **ROUTE})
        assert lane.status_code == route.status_code == 200, (lane.text, route.text)
        assert lane.headers["content-type"] == "application/json"
        assert _without_id(lane.json()) == _without_id(route.json())
        assert lane.json()["prediction_id"] != route.json()["prediction_id"]


@pytest.mark.parametrize(
    ("body", "key", "status"),
    [
        (TRANSACTION, "none", 401),
        (TRANSACTION, "wrong", 401),
        (TRANSACTION, "admin", 403),
        ({**TRANSACTION, "date": "2024-13-01"}, "predict", 422),
        ({**TRANSACTION, "amount": "lots"}, "predict", 422),
        ({**TRANSACTION, "surprise": 1}, "predict", 422),
        ([TRANSACTION], "predict", 422),
    ],
)
def test_refusals_are_the_fastapi_routes_own(
    client: TestClient, body: Any, key: str, status: int
) -> None:
    # keys by name: raw keys are random per process, and test ids must match across workers
    raw = {"none": None, "wrong": "wrong-key", "admin": ADMIN_RAW, "predict": RAW}[key]
    auth = bearer(raw) if raw else {}
    lane = _post(client, "category", body, {**auth, **LANE})
    route = _post(client, "category", body, {**auth, **ROUTE})
    assert lane.status_code == route.status_code == status, (lane.text, route.text)
    assert lane.json() == route.json()


def test_a_broken_json_body_gets_the_same_422(client: TestClient) -> None:
    lane = client.post("/predict/amount", content=b"{not json", headers={**bearer(RAW), **LANE})
    assert lane.status_code == 422, lane.text
    assert "JSON" in lane.json()["detail"]


def test_the_rate_limit_spends_one_token_per_request_on_either_path(home: Path) -> None:
    settings = _settings(home, rate_limit_per_second=0.001, rate_limit_burst=4)
    with TestClient(create_app(settings, poll=False)) as client:
        auth = bearer(RAW)
        codes = [
            _post(client, "category", {**TRANSACTION, "date": "bad"}, {**auth, **LANE}).status_code,
            _post(client, "category", TRANSACTION, {**auth, **LANE}).status_code,
            _post(client, "amount", TRANSACTION, {**auth, **ROUTE}).status_code,
            _post(client, "anomaly", TRANSACTION, {**auth, **LANE}).status_code,
        ]
        limited = _post(client, "category", TRANSACTION, {**auth, **LANE})
    assert codes == [422, 200, 200, 200]
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) >= 1
    assert "rate limit of API key 'svc' exceeded" in limited.json()["detail"]


def test_lane_answers_are_labelled_and_logged_as_the_routes(client: TestClient) -> None:
    for _ in range(3):
        assert _post(client, "anomaly", TRANSACTION, {**bearer(RAW), **LANE}).status_code == 200
    text = client.get("/metrics").text
    durations = {
        tuple(sorted(sample.labels.items()))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "titans_request_duration_seconds_count"
    }
    assert (
        ("model", "anomaly"),
        ("route", "/predict/anomaly"),
        ("status", "200"),
        ("version", "1"),
    ) in durations

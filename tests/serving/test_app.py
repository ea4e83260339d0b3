"""The prediction API over real production models: shapes, versions, batches, bad input.

The four models are trained on 3,000 generated rows and promoted once per module; a test that
changes the registry works on its own copy of the registry database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from _support.serving import TRANSACTION, copy_registry, serving_settings, train_and_promote_all
from titans.config import MODEL_KEYS, Settings
from titans.serving.app import create_app
from titans.serving.auth import generate_api_key

#: a key with every role, sent by every test client of this module
RAW_KEY, API_KEY = generate_api_key("tests", ["predict", "admin"])
AUTH = {"Authorization": f"Bearer {RAW_KEY}"}


def _settings(home: Path, **overrides: Any) -> Settings:
    """Shared serving settings with this module's key (``api_keys`` in overrides replaces it)."""
    return serving_settings(home, overrides.pop("api_keys", [API_KEY]), **overrides)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with version 1 of every model in production."""
    home = tmp_path_factory.mktemp("serving-app")
    train_and_promote_all(_settings(home), rows=3_000, seed=1)
    return home


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(home)), headers=AUTH) as test_client:
        yield test_client


def _copy(home: Path, tmp_path: Path) -> Path:
    return copy_registry(home, tmp_path / "home")


def _batch(model: str, count: int) -> dict[str, Any]:
    return {"model": model, "transactions": [TRANSACTION] * count}


def _served_by(body: dict[str, Any], model: str) -> None:
    assert body["model"] == model
    assert body["model_name"] == f"titans-{model}"
    # no A/B test runs: no arm
    assert (body["version"], body["alias"], body["arm"]) == ("1", "production", None)
    assert len(body["prediction_id"]) == 32 and int(body["prediction_id"], 16) >= 0


# ------------------------------------------------------------------ predictions


def test_category_prediction_has_probabilities_and_top_classes(client: TestClient) -> None:
    response = client.post("/predict/category", json=TRANSACTION)
    assert response.status_code == 200, response.text
    body = response.json()
    _served_by(body, "category")
    prediction = body["prediction"]
    top = prediction["top_classes"]
    assert len(top) == 3
    assert top[0] == {
        "category": prediction["prediction"],
        "probability": prediction["probability"],
    }
    probabilities = [c["probability"] for c in top]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < probabilities[0] <= 1


def test_amount_prediction_has_an_interval(client: TestClient) -> None:
    body = client.post("/predict/amount", json=TRANSACTION).json()
    _served_by(body, "amount")
    p = body["prediction"]
    assert 0 <= p["lower"] <= p["prediction"] <= p["upper"]


def test_anomaly_prediction_has_a_score_and_a_verdict(client: TestClient) -> None:
    body = client.post("/predict/anomaly", json=TRANSACTION).json()
    _served_by(body, "anomaly")
    assert isinstance(body["prediction"]["score"], float)
    assert isinstance(body["prediction"]["is_anomaly"], bool)


def test_cashflow_forecasts_30_days_after_the_latest_transaction(client: TestClient) -> None:
    history = [
        {**TRANSACTION, "date": "2024-05-01"},
        {**TRANSACTION, "date": "2024-05-20", "type": "Income", "amount": 2500.0},
    ]
    response = client.post("/predict/cashflow", json={"history": history})
    assert response.status_code == 200, response.text
    body = response.json()
    _served_by(body, "cashflow")
    forecast = body["prediction"]["forecast"]
    assert len(forecast) == 30
    assert (forecast[0]["date"], forecast[-1]["date"]) == ("2024-05-21", "2024-06-19")
    assert all(d["lower"] <= d["prediction"] <= d["upper"] for d in forecast)


def test_each_prediction_gets_its_own_id(client: TestClient) -> None:
    ids = {client.post("/predict/amount", json=TRANSACTION).json()["prediction_id"] for _ in "ab"}
    assert len(ids) == 2


# ------------------------------------------------------------------ batches


def test_batch_predictions_come_back_in_the_order_sent(client: TestClient) -> None:
    descriptions = ["Office rent for May", "Uber ride to airport", "Adobe subscription", "Lunch"]
    transactions = [{**TRANSACTION, "description": d} for d in descriptions]
    response = client.post(
        "/predict/batch", json={"model": "category", "transactions": transactions}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    _served_by({**body, "prediction_id": "0" * 32}, "category")
    batch = [item["prediction"] for item in body["predictions"]]
    single = [client.post("/predict/category", json=t).json()["prediction"] for t in transactions]
    assert batch == single
    assert len({item["prediction_id"] for item in body["predictions"]}) == len(descriptions)


def test_a_batch_over_the_limit_is_refused(home: Path) -> None:
    client = TestClient(create_app(_settings(home, max_batch_size=3), poll=False), headers=AUTH)
    ok = client.post("/predict/batch", json=_batch("amount", 3))
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 3
    over = client.post(
        "/predict/batch", json={"model": "amount", "transactions": [TRANSACTION] * 4}
    )
    assert over.status_code == 422
    assert over.json()["detail"].startswith(
        "transactions: 4 transactions is more than the limit of 3"
    )


def test_a_batch_for_cashflow_points_to_the_cashflow_route(client: TestClient) -> None:
    response = client.post(
        "/predict/batch", json={"model": "cashflow", "transactions": [TRANSACTION]}
    )
    assert response.status_code == 422
    assert "/predict/cashflow" in response.json()["detail"]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"amount": "lots"}, "amount", "valid number"),
        ({"amount": 5e12}, "amount", "less than or equal to 1000000000"),
        ({"type": "Refund"}, "type", "'Income' or 'Expense'"),
        ({"date": "02/05/2024"}, "date", "YYYY-MM-DD"),
        ({"date": "1850-01-01"}, "date", "between 1970-01-01 and 2100-12-31"),
        ({"description": "x" * 5_001}, "description", "at most 5000 characters"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"date": None}, "date", "YYYY-MM-DD"),
    ],
)
def test_bad_fields_are_a_422_naming_the_field(
    client: TestClient, change: dict[str, Any], field: str, problem: str
) -> None:
    response = client.post("/predict/amount", json={**TRANSACTION, **change})
    assert response.status_code == 422
    body = response.json()
    (line,) = body["errors"]
    assert line.startswith(f"{field}: ") and problem in line, line
    assert body["detail"] == line


def test_a_missing_field_and_a_non_finite_amount_are_each_one_line(client: TestClient) -> None:
    body = {k: v for k, v in TRANSACTION.items() if k != "type"}
    response = client.post(
        "/predict/category",
        content=_json_with_raw_amount(body, "1e999"),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert sorted(response.json()["errors"]) == [
        "amount: Input should be a finite number",
        "type: Field required",
    ]


def _json_with_raw_amount(body: dict[str, Any], raw: str) -> bytes:
    import json

    return json.dumps({**body, "amount": "__RAW__"}).replace('"__RAW__"', raw).encode()


def test_malformed_json_is_a_422(client: TestClient) -> None:
    response = client.post(
        "/predict/amount", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


def test_an_oversize_body_is_a_413_by_header_and_when_streamed(home: Path) -> None:
    client = TestClient(create_app(_settings(home, max_body_bytes=2_048), poll=False), headers=AUTH)
    big = {"model": "amount", "transactions": [TRANSACTION] * 20}
    declared = client.post("/predict/batch", json=big)
    assert declared.status_code == 413
    assert "larger than the limit of 2,048 bytes" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for _ in range(10):
            yield b" " * 1_000

    streamed = client.post(
        "/predict/amount", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    small = client.post("/predict/amount", json=TRANSACTION)
    assert small.status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict/price", TRANSACTION),
        ("/predict/batch", {"model": "price", "transactions": [TRANSACTION]}),
    ],
)
def test_an_unknown_model_is_a_404(client: TestClient, path: str, body: dict[str, Any]) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 404
    assert response.json() == {
        "detail": "unknown model 'price'; choose one of: category, amount, anomaly, cashflow"
    }


# ------------------------------------------------------------------ health, ready, models


def test_health_ready_and_models_when_everything_is_loaded(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "registry_up": True, "reasons": [], "missing": []}
    models = client.get("/models").json()["models"]
    assert [m["model"] for m in models] == list(MODEL_KEYS)
    for m in models:
        assert (m["name"], m["version"], m["alias"], m["flavour"]) == (
            f"titans-{m['model']}",
            "1",
            "production",
            "sklearn",
        )
        assert m["loaded_at"].endswith("+00:00")


def test_a_model_without_production_alias_makes_ready_503_and_its_route_503(
    home: Path, tmp_path: Path
) -> None:
    settings = _settings(_copy(home, tmp_path))
    registry = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    registry.delete_registered_model_alias("titans-cashflow", "production")
    client = TestClient(create_app(settings, poll=False), headers=AUTH)

    ready = client.get("/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "degraded" and body["missing"] == ["cashflow"]
    assert body["reasons"] == [
        "titans-cashflow has no production alias; promote a version with `titans registry promote`"
    ]
    refused = client.post("/predict/cashflow", json={"history": [TRANSACTION]})
    assert refused.status_code == 503
    assert refused.json()["detail"].startswith("model cashflow is not loaded: titans-cashflow has")
    # the other models still serve
    assert client.post("/predict/amount", json=TRANSACTION).status_code == 200
    assert [m["model"] for m in client.get("/models").json()["models"]] == [
        "category",
        "amount",
        "anomaly",
    ]


def test_single_transactions_take_the_compiled_path_and_answer_as_the_batch_path(
    client: TestClient,
) -> None:
    import pandas as pd

    from titans.data.synth import generate

    listed = {m["model"]: m["single_row_path"] for m in client.get("/models").json()["models"]}
    assert listed == {
        "category": "compiled",
        "amount": "compiled",
        "anomaly": "compiled",
        "cashflow": "batch",
    }
    frame = generate(300, seed=11).head(40)
    fields = ["type", "description", "amount", "payment_method", "reference", "status", "category"]
    transactions = [
        {
            "date": str(row["date"])[:10],
            **{f: None if pd.isna(row[f]) else row[f] for f in fields},
        }
        for row in frame.to_dict("records")
    ]
    for model in ("category", "amount", "anomaly"):
        batch = client.post("/predict/batch", json={"model": model, "transactions": transactions})
        assert batch.status_code == 200, batch.text
        expected = [item["prediction"] for item in batch.json()["predictions"]]
        for transaction, wanted in zip(transactions, expected, strict=True):
            single = client.post(f"/predict/{model}", json=transaction).json()["prediction"]
            assert set(single) == set(wanted)
            for field, value in wanted.items():
                if isinstance(value, float):
                    assert single[field] == pytest.approx(value, rel=1e-9), (model, field)
                elif field == "top_classes":
                    assert [c["category"] for c in single[field]] == [c["category"] for c in value]
                else:
                    assert single[field] == value, (model, field)

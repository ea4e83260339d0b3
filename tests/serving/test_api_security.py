"""API keys, roles and rate limits on the prediction API, over real production models."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from _support.serving import TRANSACTION, bearer, call, serving_settings, train_and_promote_all
from titans.cli import _register_groups
from titans.cli import app as cli_app
from titans.config import ApiKey, Settings
from titans.serving.app import create_app
from titans.serving.auth import generate_api_key, hash_key

PREDICT_RAW, PREDICT_KEY = generate_api_key("svc", ["predict"])
ADMIN_RAW, ADMIN_KEY = generate_api_key("ops", ["admin"])
OTHER_RAW, OTHER_KEY = generate_api_key("svc2", ["predict"])
#: every protected route with a body it accepts
PROTECTED: list[tuple[str, str, dict[str, Any] | None]] = [
    ("post", "/predict/category", TRANSACTION),
    ("post", "/predict/amount", TRANSACTION),
    ("post", "/predict/anomaly", TRANSACTION),
    ("post", "/predict/cashflow", {"history": [TRANSACTION]}),
    ("post", "/predict/batch", {"model": "amount", "transactions": [TRANSACTION] * 2}),
    ("post", "/feedback", {"prediction_id": "0" * 32, "actual": {"amount": 1.0}}),
    ("get", "/models", None),
]


def _settings(home: Path, **overrides: Any) -> Settings:
    api_keys = overrides.pop("api_keys", [PREDICT_KEY, ADMIN_KEY, OTHER_KEY])
    overrides.setdefault("prediction_log_flush_seconds", 0.05)
    return serving_settings(home, api_keys, model_poll_seconds=0, **overrides)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with version 1 of every model in production."""
    home = tmp_path_factory.mktemp("api-security")
    train_and_promote_all(_settings(home), rows=2_000, seed=3)
    return home


@pytest.fixture(scope="module")
def client(home: Path) -> Any:
    with TestClient(create_app(_settings(home), poll=False)) as test_client:
        yield test_client


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_every_route_answers_a_valid_predict_key(
    client: TestClient, method: str, path: str, body: Any
) -> None:
    response = call(client, method, path, body, bearer(PREDICT_RAW))
    # the feedback id is unknown: authenticated and authorized, then a 404
    assert response.status_code == (404 if path == "/feedback" else 200), response.text


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [{}, bearer("titans_not-a-real-key"), {"Authorization": f"Basic {PREDICT_RAW}"}],
    ids=["missing", "invalid", "not-bearer"],
)
def test_no_valid_key_is_a_401_with_a_bearer_challenge(
    client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    response = call(client, method, path, body, headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/predict/category", "/feedback"])
def test_a_key_without_the_predict_role_is_a_403(client: TestClient, path: str) -> None:
    body = TRANSACTION if path != "/feedback" else {"prediction_id": "x", "actual": {}}
    response = client.post(path, json=body, headers=bearer(ADMIN_RAW))
    assert response.status_code == 403
    assert "lacks the role 'predict'" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
def test_open_routes_need_no_key(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_open_routes_are_configurable(home: Path) -> None:
    app = create_app(_settings(home, open_routes=["/health"]), poll=False)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer(ADMIN_RAW)).status_code == 200


def test_without_configured_keys_protected_routes_say_how_to_create_one(home: Path) -> None:
    with TestClient(create_app(_settings(home, api_keys=[]), poll=False)) as client:
        response = client.post("/predict/amount", json=TRANSACTION, headers=bearer(PREDICT_RAW))
        assert response.status_code == 401
        assert "titans keys create" in response.json()["detail"]
        assert client.get("/health").status_code == 200


def test_over_the_burst_a_key_gets_429_with_retry_after(home: Path) -> None:
    settings = _settings(home, rate_limit_burst=3, rate_limit_per_second=0.01)
    with TestClient(create_app(settings, poll=False)) as client:
        codes = [
            client.post("/predict/amount", json=TRANSACTION, headers=bearer(PREDICT_RAW))
            for _ in range(4)
        ]
        assert [r.status_code for r in codes] == [200, 200, 200, 429]
        refused = codes[-1]
        assert int(refused.headers["Retry-After"]) >= 1
        assert "rate limit" in refused.json()["detail"]
        # feedback spends from the same bucket; another key has its own
        feedback = {"prediction_id": "0" * 32, "actual": {"amount": 1.0}}
        assert (
            client.post("/feedback", json=feedback, headers=bearer(PREDICT_RAW)).status_code == 429
        )
        other = client.post("/predict/amount", json=TRANSACTION, headers=bearer(OTHER_RAW))
        assert other.status_code == 200
        # open routes are not limited
        assert client.get("/health").status_code == 200
        metrics = client.get("/metrics").text
        assert "titans_rate_limited_total 2.0" in metrics


def test_keys_create_prints_the_raw_key_once_and_an_entry_holding_only_its_hash(
    home: Path,
) -> None:
    _register_groups()
    result = CliRunner().invoke(cli_app, ["keys", "create", "billing", "--role", "predict"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    raw = next(line for line in lines if line.startswith("titans_"))
    entry = json.loads(next(line for line in lines if line.startswith("{")))
    assert result.output.count(raw) == 1
    assert entry == {"name": "billing", "key_sha256": hash_key(raw), "roles": ["predict"]}
    settings = _settings(home, api_keys=[ApiKey.model_validate(entry)])
    with TestClient(create_app(settings, poll=False)) as client:
        response = client.post("/predict/amount", json=TRANSACTION, headers=bearer(raw))
        assert response.status_code == 200


def test_with_redis_the_limit_is_shared_by_two_app_instances(home: Path) -> None:
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip("no Redis server at 127.0.0.1:6379")
    raw, key = generate_api_key(f"svc-{secrets.token_hex(6)}", ["predict"])  # fresh bucket
    settings = _settings(
        home, api_keys=[key], redis_url=url, rate_limit_burst=2, rate_limit_per_second=0.01
    )
    first, second = create_app(settings, poll=False), create_app(settings, poll=False)
    with TestClient(first) as one, TestClient(second) as two:
        codes = [
            c.post("/predict/amount", json=TRANSACTION, headers=bearer(raw)).status_code
            for c in (one, two, one)
        ]
        refused = two.post("/predict/amount", json=TRANSACTION, headers=bearer(raw))
    assert codes == [200, 200, 429]
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1

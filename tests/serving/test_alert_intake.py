"""``POST /alerts/alertmanager``: Alertmanager's webhook payload stored in the ops store, with the
``alerts`` role required. (End to end from a real Alertmanager: test_observability_stack.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from _support.serving import bearer, serving_settings
from titans.serving.app import create_app
from titans.serving.auth import generate_api_key
from titans.store import Store
from titans.store.models import Alert

ALERTS_RAW, ALERTS_KEY = generate_api_key("alertmanager", ["alerts"])
PREDICT_RAW, PREDICT_KEY = generate_api_key("client", ["predict"])


def _payload(status: str, fingerprint: str = "0123012301230123", **labels: str) -> dict[str, Any]:
    alert_labels = {
        "alertname": "TitansDataDrift",
        "model": "titans-category",
        "severity": "warning",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="TitansDataDrift"}',
        "status": status,
        "receiver": "titans-warning",
        "groupLabels": {"alertname": "TitansDataDrift"},
        "commonLabels": alert_labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": status,
                "labels": {**alert_labels, **labels},
                "annotations": {"summary": "titans-category: 50% of input features drifted"},
                "startsAt": "2026-11-27T04:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": fingerprint,
            }
        ],
    }


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Store]]:
    settings = serving_settings(tmp_path, [ALERTS_KEY, PREDICT_KEY], model_poll_seconds=0)
    with TestClient(create_app(settings, poll=False)) as test_client:
        yield test_client, Store(settings)


def _rows(store: Store) -> list[Alert]:
    with store.session() as session:
        rows = list(session.scalars(select(Alert).order_by(Alert.id)))
        session.expunge_all()
    return rows


def test_firing_then_repeated_then_resolved_is_one_alert_closed_once(
    client: tuple[TestClient, Store],
) -> None:
    test_client, store = client
    url, auth = "/alerts/alertmanager", bearer(ALERTS_RAW)
    first = test_client.post(url, json=_payload("firing"), headers=auth)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 1, "opened": 1, "updated": 0, "resolved": 0}
    again = test_client.post(url, json=_payload("firing"), headers=auth)
    assert again.json() == {"received": 1, "opened": 0, "updated": 1, "resolved": 0}
    (row,) = _rows(store)
    assert (row.name, row.severity, row.status) == ("TitansDataDrift", "warning", "firing")
    assert row.fingerprint == "am:0123012301230123"
    assert row.details["labels"]["model"] == "titans-category"
    assert row.details["source"] == "alertmanager" and row.details["receiver"] == "titans-warning"
    done = test_client.post(url, json=_payload("resolved"), headers=auth)
    assert done.json() == {"received": 1, "opened": 0, "updated": 0, "resolved": 1}
    (row,) = _rows(store)
    assert row.status == "resolved" and row.resolved_at is not None
    # the same alert firing again later is a new episode, not a reopened row
    test_client.post(url, json=_payload("firing"), headers=auth)
    assert [r.status for r in _rows(store)] == ["resolved", "firing"]


def test_only_a_key_with_the_alerts_role_may_post(client: tuple[TestClient, Store]) -> None:
    test_client, store = client
    assert test_client.post("/alerts/alertmanager", json=_payload("firing")).status_code == 401
    refused = test_client.post(
        "/alerts/alertmanager", json=_payload("firing"), headers=bearer(PREDICT_RAW)
    )
    assert refused.status_code == 403 and "lacks the role 'alerts'" in refused.json()["detail"]
    assert _rows(store) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.update(version="3"),
        lambda p: p.update(alerts=[]),
        lambda p: p["alerts"][0].update(fingerprint="not hex!"),
        lambda p: p["alerts"][0].update(status="pending"),
        lambda p: p["alerts"][0].pop("startsAt"),
    ],
    ids=["old-version", "no-alerts", "bad-fingerprint", "bad-status", "no-start"],
)
def test_a_malformed_payload_is_a_422_and_stores_nothing(
    client: tuple[TestClient, Store], mutate: Any
) -> None:
    test_client, store = client
    payload = _payload("firing")
    mutate(payload)
    response = test_client.post("/alerts/alertmanager", json=payload, headers=bearer(ALERTS_RAW))
    assert response.status_code == 422, response.text
    assert _rows(store) == []

"""Admin and approval routes: promote, roll back, reload, A/B tests and approvals, all audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _support.serving import bearer, call, serving_settings, train_and_promote_all
from titans.config import Settings
from titans.governance.audit import AuditLogger
from titans.governance.governance import ModelGovernanceManager
from titans.serving.app import create_app
from titans.serving.auth import generate_api_key

PREDICT_RAW, PREDICT_KEY = generate_api_key("svc", ["predict"])
ADMIN_RAW, ADMIN_KEY = generate_api_key("ops", ["admin"])
#: an approver who is also the governance identity "ann" (a requester): four eyes applies
ANN_RAW, ANN_KEY = generate_api_key("ann", ["approver"])
CAROL_RAW, CAROL_KEY = generate_api_key("carol", ["approver"])

ADMIN_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("post", "/admin/reload", None),
    ("post", "/admin/promote", {"model": "category", "version": "1", "stage": "production"}),
    ("post", "/admin/rollback", {"model": "category", "version": "1", "reason": "r"}),
    (
        "post",
        "/admin/ab-tests",
        {
            "name": "t",
            "model": "category",
            "version_a": "1",
            "version_b": "2",
            "traffic_split": 0.5,
            "mode": "split",
        },
    ),
    ("post", "/admin/ab-tests/t/stop", {"reason": "r"}),
    ("get", "/approvals/pending", None),
    ("post", "/approvals/abcdef123/approve", {"comment": ""}),
    ("post", "/approvals/abcdef123/reject", {"comment": "no"}),
]


def _settings(home: Path) -> Settings:
    keys = [PREDICT_KEY, ADMIN_KEY, ANN_KEY, CAROL_KEY]
    return serving_settings(home, keys, model_poll_seconds=0, prediction_log_flush_seconds=0.05)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 of every model in production, and category versions 2 and 3 registered."""
    from titans.data.synth import generate
    from titans.models.train import train_models

    home = tmp_path_factory.mktemp("admin-routes")
    settings = _settings(home)
    train_and_promote_all(settings, rows=2_000, seed=5)
    for seed in (6, 7):
        (result,) = train_models(
            generate(2_000, seed=seed), models=["category"], seed=seed, settings=settings
        )
        assert result.version == str(seed - 4)
    return home


@pytest.fixture(scope="module")
def client(home: Path) -> Any:
    with TestClient(create_app(_settings(home), poll=False)) as test_client:
        yield test_client


def _serving_version(client: TestClient, model: str) -> str:
    listed = client.get("/models", headers=bearer(PREDICT_RAW)).json()["models"]
    return next(m["version"] for m in listed if m["model"] == model)


def _audit(home: Path) -> list[Any]:
    return AuditLogger(_settings(home)).entries()


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_and_approval_routes_refuse_missing_keys_and_wrong_roles(
    client: TestClient, method: str, path: str, body: Any
) -> None:
    missing = call(client, method, path, body, {})
    assert missing.status_code == 401, missing.text
    wrong = call(client, method, path, body, bearer(PREDICT_RAW))
    assert wrong.status_code == 403, wrong.text
    assert "lacks the role" in wrong.json()["detail"]
    other = ADMIN_RAW if path.startswith("/approvals") else CAROL_RAW
    assert call(client, method, path, body, bearer(other)).status_code == 403


def test_reload_reports_every_model(client: TestClient) -> None:
    response = client.post("/admin/reload", headers=bearer(ADMIN_RAW))
    assert response.status_code == 200, response.text
    assert set(response.json()["reload"]) == {"category", "amount", "anomaly", "cashflow"}


def test_promote_refuse_and_roll_back_through_the_gates(client: TestClient, home: Path) -> None:
    settings = _settings(home)
    governance = ModelGovernanceManager(settings)
    request_id = governance.request_model_approval("models:/titans-category/2", "better", "ann")
    governance.approve(request_id, "bob", "ok")

    promoted = client.post(
        "/admin/promote",
        json={"model": "category", "version": "2", "stage": "production"},
        headers=bearer(ADMIN_RAW),
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["alias_version"] == "2"
    assert _serving_version(client, "category") == "2"
    entry = next(e for e in reversed(_audit(home)) if e.action == "registry.promoted")
    assert (entry.actor, entry.model_name, entry.model_version) == ("ops", "titans-category", "2")

    # version 3 has no approval and the policy never auto-approves
    refused = client.post(
        "/admin/promote",
        json={"model": "titans-category", "version": "3", "stage": "production"},
        headers=bearer(ADMIN_RAW),
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["gate"] == "approval"
    assert "approval" in refused.json()["detail"]
    assert _serving_version(client, "category") == "2"
    assert _audit(home)[-1].action == "registry.promotion_refused"

    unknown = client.post(
        "/admin/promote",
        json={"model": "category", "version": "99", "stage": "staging"},
        headers=bearer(ADMIN_RAW),
    )
    assert unknown.status_code == 404, unknown.text

    rolled = client.post(
        "/admin/rollback",
        json={"model": "category", "version": "1", "reason": "v2 misroutes travel"},
        headers=bearer(ADMIN_RAW),
    )
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["alias_version"] == "1"
    assert _serving_version(client, "category") == "1"
    entry = _audit(home)[-1]
    assert (entry.action, entry.actor, entry.model_version) == ("registry.rolled_back", "ops", "1")

    again = client.post(
        "/admin/rollback",
        json={"model": "category", "version": "1", "reason": "twice"},
        headers=bearer(ADMIN_RAW),
    )
    assert again.status_code == 409, again.text
    assert again.json()["gate"] == "stage"


def test_ab_test_create_duplicate_and_stop(client: TestClient, home: Path) -> None:
    body = {
        "name": "cat-2-vs-3",
        "model": "category",
        "version_a": "2",
        "version_b": "3",
        "traffic_split": 0.3,
        "mode": "shadow",
    }
    created = client.post("/admin/ab-tests", json=body, headers=bearer(ADMIN_RAW))
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "running"
    assert created.json()["model"] == "titans-category"

    second = client.post(
        "/admin/ab-tests", json={**body, "name": "another"}, headers=bearer(ADMIN_RAW)
    )
    assert second.status_code == 409, second.text
    assert "already running" in second.json()["detail"]

    stopped = client.post(
        "/admin/ab-tests/cat-2-vs-3/stop", json={"reason": "enough"}, headers=bearer(ADMIN_RAW)
    )
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "stopped"
    again = client.post(
        "/admin/ab-tests/cat-2-vs-3/stop", json={"reason": "enough"}, headers=bearer(ADMIN_RAW)
    )
    assert again.status_code == 409
    missing = client.post(
        "/admin/ab-tests/nope/stop", json={"reason": "x"}, headers=bearer(ADMIN_RAW)
    )
    assert missing.status_code == 404
    actions = [(e.action, e.actor) for e in _audit(home)[-2:]]
    assert actions == [("ab.created", "ops"), ("ab.stopped", "ops")]


def test_approvals_pending_four_eyes_and_decided(client: TestClient, home: Path) -> None:
    governance = ModelGovernanceManager(_settings(home))
    request_id = governance.request_model_approval("models:/titans-amount/1", "recheck", "ann")

    listed = client.get("/approvals/pending", headers=bearer(CAROL_RAW))
    assert listed.status_code == 200, listed.text
    assert request_id in [r["id"] for r in listed.json()["pending"]]

    own = client.post(
        f"/approvals/{request_id}/approve", json={"comment": "mine"}, headers=bearer(ANN_RAW)
    )
    assert own.status_code == 403, own.text
    assert "four eyes" in own.json()["detail"]

    silent = client.post(
        f"/approvals/{request_id}/reject", json={"comment": " "}, headers=bearer(CAROL_RAW)
    )
    assert silent.status_code == 422, silent.text
    assert "comment" in silent.json()["detail"]

    granted = client.post(
        f"/approvals/{request_id}/approve", json={"comment": "ok"}, headers=bearer(CAROL_RAW)
    )
    assert granted.status_code == 200, granted.text
    assert (granted.json()["status"], granted.json()["decided_by"]) == ("approved", "carol")
    entry = _audit(home)[-1]
    assert (entry.action, entry.actor) == ("approval.granted", "carol")

    decided = client.post(
        f"/approvals/{request_id}/reject", json={"comment": "late"}, headers=bearer(CAROL_RAW)
    )
    assert decided.status_code == 409, decided.text
    unknown = client.post(
        "/approvals/ffffffffffff/approve", json={"comment": ""}, headers=bearer(CAROL_RAW)
    )
    assert unknown.status_code == 404, unknown.text
    assert request_id not in [
        r["id"]
        for r in client.get("/approvals/pending", headers=bearer(CAROL_RAW)).json()["pending"]
    ]


def test_the_audit_chain_verifies_after_every_admin_action(client: TestClient, home: Path) -> None:
    assert AuditLogger(_settings(home)).verify().ok

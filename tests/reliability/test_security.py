"""Security under stress: every admin/approver route refuses a missing, wrong or wrong-role key;
no raw key shows up in logs or error bodies; the audit chain names a tampered entry; and rate
limits hold for concurrent clients spread over two API processes sharing one Redis."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from _support.figures import Figures
from _support.serving import TRANSACTION, bearer, copy_registry, serving_settings
from reliability.conftest import require_env
from titans.cli import _register_groups
from titans.cli import app as cli_app
from titans.governance.audit import AuditLogger
from titans.serving.app import create_app
from titans.serving.auth import generate_api_key
from titans.serving.deps import require_admin
from titans.serving.process import ApiProcess
from titans.serving.routes.approvals import require_approver
from titans.store import Store
from titans.store.models import AuditEntryRow

PREDICT_RAW, PREDICT_KEY = generate_api_key("svc", ["predict"])
ADMIN_RAW, ADMIN_KEY = generate_api_key("ops", ["admin"])
APPROVER_RAW, APPROVER_KEY = generate_api_key("bob", ["approver"])
WRONG_RAW = generate_api_key("nobody", ["admin"])[0]  # well-formed, never configured
RAW_KEYS = (PREDICT_RAW, ADMIN_RAW, APPROVER_RAW, WRONG_RAW)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every APIRoute of an app, including those of routers it includes."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def _guards(route: APIRoute) -> set[str]:
    """The roles (admin/approver) a route's dependency tree requires."""
    found: set[str] = set()
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant.call is require_admin:
            found.add("admin")
        if dependant.call is require_approver:
            found.add("approver")
        stack.extend(dependant.dependencies)
    return found


@pytest.fixture(scope="module")
def app(template_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    home = copy_registry(template_home, tmp_path_factory.mktemp("security"))
    settings = serving_settings(home, [PREDICT_KEY, ADMIN_KEY, APPROVER_KEY], model_poll_seconds=0)
    application = create_app(settings, poll=False)
    with TestClient(application):
        yield application


def test_every_admin_and_approver_route_refuses_a_bad_key(
    app: FastAPI, caplog: pytest.LogCaptureFixture, figures: Figures
) -> None:
    guarded = [(r, _guards(r)) for r in _api_routes(app.routes) if _guards(r)]
    documented = {p for p in app.openapi()["paths"] if p.startswith(("/admin", "/approvals"))}
    assert {r.path for r, _ in guarded} == documented  # every admin/approver route is here
    refusals: Counter[int] = Counter()
    bodies: list[str] = []
    caplog.set_level(logging.DEBUG)
    with TestClient(app) as client:
        for route, roles in guarded:
            path = route.path_format.replace("{", "").replace("}", "")  # any value will do
            wrong_role = PREDICT_RAW if "admin" in roles else ADMIN_RAW
            for label, headers, status in [
                ("missing", {}, 401),
                ("wrong", bearer(WRONG_RAW), 401),
                ("wrong scheme", {"Authorization": f"Basic {ADMIN_RAW}"}, 401),
                ("wrong role", bearer(wrong_role), 403),
            ]:
                for method in sorted(route.methods):
                    response = client.request(method, path, headers=headers, json={})
                    assert response.status_code == status, (label, method, path, response.text)
                    refusals[status] += 1
                    bodies.append(response.text)
        # the routes do answer the right role (the refusals are about the key, not the path)
        assert client.get("/approvals/pending", headers=bearer(APPROVER_RAW)).status_code == 200
        assert client.post("/admin/reload", headers=bearer(ADMIN_RAW)).status_code == 200
        assert client.post("/predict/amount", json=TRANSACTION,
                           headers=bearer(PREDICT_RAW)).status_code == 200  # fmt: skip
        bodies.append(client.post("/predict/amount", json={"amount": "x"},
                                  headers=bearer(PREDICT_RAW)).text)  # fmt: skip
    captured = caplog.text + "\n".join(bodies)
    leaked = [raw[:12] for raw in RAW_KEYS if raw in captured or raw.split("_", 1)[-1] in captured]
    name = "security: admin/approver routes"
    figures.record(name, "guarded routes", len(guarded))
    figures.record(name, "refusals 401 / 403", f"{refusals[401]} / {refusals[403]}")
    figures.record(name, "raw keys found in logs + bodies", len(leaked))
    assert leaked == []
    assert caplog.records  # the logs were really captured (the API logs its requests' trouble)


def test_the_audit_chain_names_a_tampered_entry(
    registry_copy: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, figures: Figures
) -> None:
    home = registry_copy("tamper")
    store = Store(serving_settings(home, []))
    entries = AuditLogger(store).entries()
    promoted = next(e for e in entries if e.action == "registry.promoted")
    with store.session() as session:
        session.execute(
            update(AuditEntryRow).where(AuditEntryRow.seq == promoted.seq).values(actor="mallory")
        )
    monkeypatch.setenv("TITANS_HOME", str(home))
    _register_groups()
    result = CliRunner().invoke(cli_app, ["governance", "audit", "verify"], terminal_width=300)
    figures.record("security: audit tamper", "entries / tampered seq / verify exit",
                   f"{len(entries)} / {promoted.seq} / {result.exit_code}")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"BROKEN at entry {promoted.seq}" in " ".join(result.output.split())


def test_rate_limit_holds_across_two_api_processes_sharing_redis(
    registry_copy: Callable[[str], Path], tmp_path: Path, figures: Figures
) -> None:
    redis_url = require_env("TITANS_TEST_REDIS_URL")
    home = registry_copy("ratelimit")
    raw, key = generate_api_key(f"shared-{uuid.uuid4().hex[:12]}", ["predict"])  # fresh bucket
    burst, per_client = 20, 15
    env = {
        "TITANS_HOME": str(home),
        "TITANS_API_KEYS": f"[{key.model_dump_json()}]",
        "TITANS_REDIS_URL": redis_url,
        "TITANS_RATE_LIMIT_BURST": str(burst),
        # 0.001 tokens/s: refills one token per 1000 s, so the burst is all a run can spend
        "TITANS_RATE_LIMIT_PER_SECOND": "0.001",
        "TITANS_MODEL_POLL_SECONDS": "0",
    }
    codes: list[int] = []
    lock = threading.Lock()

    def client(url: str) -> None:
        with httpx.Client(base_url=url, headers=bearer(raw), timeout=30.0) as http:
            for _ in range(per_client):
                status = http.post("/predict/amount", json=TRANSACTION).status_code
                with lock:
                    codes.append(status)

    with (
        ApiProcess(env, log_path=tmp_path / "a.log") as a,
        ApiProcess(env, log_path=tmp_path / "b.log") as b,
    ):
        threads = [threading.Thread(target=client, args=(api.url,)) for api in (a, b, a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    logs = (tmp_path / "a.log").read_text(errors="replace") + (tmp_path / "b.log").read_text(
        errors="replace"
    )
    counted = Counter(codes)
    name = "security: rate limit, 2 processes + Redis"
    figures.record(name, "requests / 200 / 429", f"{len(codes)} / {counted[200]} / {counted[429]}")
    figures.record(name, "burst (whole budget)", burst)
    assert len(codes) == 4 * per_client
    assert set(counted) <= {200, 429}, counted
    assert counted[200] == burst  # one shared bucket: not 2 x burst
    assert raw not in logs and raw.split("_", 1)[-1] not in logs

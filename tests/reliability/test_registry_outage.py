"""Registry outage: the `mlflow server` the API polls is killed while it serves. Predictions go
on from the loaded models, /ready says degraded and `titans_registry_up` is 0; once the server
is back on its port the API recovers by itself (no restart, no admin call)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from _support.figures import Figures
from _support.mlflow_server import MlflowServer
from _support.serving import TRANSACTION, bearer
from titans.serving.auth import generate_api_key
from titans.serving.process import ApiProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAW, KEY = generate_api_key("outage", ["predict"])
#: bound on every wait for the API to notice a change (it polls every 0.5 s)
NOTICE_S = 30.0


def registry_up(client: httpx.Client) -> float:
    """The API's ``titans_registry_up`` gauge, read from /metrics."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("titans_registry_up "):
            return float(line.split()[1])
    raise AssertionError("/metrics has no titans_registry_up")


def _until(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + NOTICE_S
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_api_serves_through_a_registry_outage_and_recovers(
    registry_copy: Callable[[str], Path], tmp_path: Path, figures: Figures
) -> None:
    home = registry_copy("registry-outage")
    server = MlflowServer(home / "mlflow.db", tmp_path / "artifacts", tmp_path / "mlflow.log")
    env = {
        "TITANS_HOME": str(home),
        "TITANS_TRACKING_URI": server.url,
        "TITANS_API_KEYS": f"[{KEY.model_dump_json()}]",
        "TITANS_MODEL_POLL_SECONDS": "0.5",
    }
    with (
        server,
        ApiProcess(env, log_path=tmp_path / "serve.log") as api,
        httpx.Client(base_url=api.url, headers=bearer(RAW), timeout=30.0) as client,
    ):
        assert client.get("/ready").json()["status"] == "ok"
        assert registry_up(client) == 1.0
        server.kill()
        degraded = _until(lambda: client.get("/ready").json()["registry_up"] is False)
        ready = client.get("/ready")
        gauge_down = registry_up(client)
        during = [client.post("/predict/category", json=TRANSACTION) for _ in range(50)]
        server.start()  # same port, same database
        recovered = _until(lambda: client.get("/ready").json()["status"] == "ok")
        gauge_back = registry_up(client)
        after = [client.post("/predict/amount", json=TRANSACTION) for _ in range(10)]
    codes = [r.status_code for r in during + after]
    name = "registry outage (mlflow server killed)"
    figures.record(name, "predictions during outage / after (200s)",
                   f"{codes[:50].count(200)}/50 / {codes[50:].count(200)}/10")  # fmt: skip
    figures.record(name, "titans_registry_up down / back", f"{gauge_down:g} / {gauge_back:g}")
    figures.record(name, "/ready during outage", f"{ready.status_code} {ready.json()['status']}")
    assert degraded, ready.text
    assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
    assert any("unreachable" in reason for reason in ready.json()["reasons"]), ready.text
    assert gauge_down == 0.0
    assert codes == [200] * 60
    assert {r.json()["version"] for r in during} == {"1"}  # the loaded model kept serving
    assert recovered and gauge_back == 1.0

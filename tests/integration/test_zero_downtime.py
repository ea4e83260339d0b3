"""A real `titans serve` under load: promotions and rollbacks drop no request, and SIGTERM
drains the prediction log so that every 200 response has exactly one logged row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from _support.serving import (
    TRANSACTION,
    bearer,
    promote,
    serving_settings,
    train_and_promote_all,
    train_version,
)
from integration.conftest import stop_process, wait_until_healthy
from titans.config import Settings
from titans.registry.registry_manager import ModelRegistryManager
from titans.serving.auth import generate_api_key
from titans.store import Store
from titans.store.models import Prediction

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAW, KEY = generate_api_key("load", ["predict"])
CATEGORY = "titans-category"
#: how long the clients keep up their load while the alias moves
LOAD_SECONDS = 20.0
SWAPS = 3


def _settings(home: Path) -> Settings:
    return serving_settings(home, [KEY])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 of every model in production; category version 2 registered."""
    home = tmp_path_factory.mktemp("zero-downtime")
    settings = _settings(home)
    train_and_promote_all(settings, rows=2_000, seed=5)
    assert train_version(settings, "category", rows=2_000, seed=6) == "2"
    return home


@contextmanager
def titans_serve(
    home: Path, port: int, log: Path, **env_settings: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`titans serve` on 127.0.0.1:``port`` for ``home``, stopped by PID when the block ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TITANS_", "MLFLOW_"))}
    env.update(
        TITANS_HOME=str(home),
        TITANS_API_KEYS=f"[{KEY.model_dump_json()}]",
        TITANS_RATE_LIMIT_PER_SECOND="100000",
        TITANS_RATE_LIMIT_BURST="100000",
        **env_settings,
    )
    titans = Path(sys.executable).with_name("titans")
    with log.open("wb") as log_file:
        proc = subprocess.Popen(  # stopped by PID (its process group) in stop_process
            [str(titans), "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_healthy(proc, f"http://127.0.0.1:{port}/ready", log)
        yield proc
    finally:
        stop_process(proc)


def _logged_rows(settings: Settings) -> int:
    with Store(settings).session() as session:
        return int(session.scalar(select(func.count()).select_from(Prediction)) or 0)


class Load:
    """Client threads posting /predict/category until stopped; every outcome is kept."""

    def __init__(self, url: str, threads: int) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok: list[tuple[str, str]] = []  # (version, prediction_id)
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def _run(self, worker: int) -> None:
        with httpx.Client(base_url=self.url, headers=bearer(RAW), timeout=15.0) as client:
            n = 0
            while not self.stop.is_set() and n < 1_000_000:
                n += 1
                body = {**TRANSACTION, "entity_id": f"w{worker}-{n}"}
                try:
                    response = client.post("/predict/category", json=body)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self.lock:
                    if response.status_code == 200:
                        data = response.json()
                        self.ok.append((data["version"], data["prediction_id"]))
                    else:
                        self.failures.append(f"{response.status_code}: {response.text[:200]}")

    def versions_seen_since(self, start: int) -> set[str]:
        with self.lock:
            return {version for version, _ in self.ok[start:]}

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def _wait_for(load: Load, version: str, deadline: float) -> bool:
    """True once a response after now is served by ``version`` (bounded by ``deadline``)."""
    start = len(load.ok)
    while time.monotonic() < deadline:
        if version in load.versions_seen_since(start):
            return True
        time.sleep(0.1)
    return False


def test_promote_and_rollback_under_load_drop_no_request(
    home: Path, free_port: Callable[[], int], tmp_path: Path
) -> None:
    settings = _settings(home)
    manager = ModelRegistryManager(settings)
    before = _logged_rows(settings)
    port = free_port()
    switched: list[tuple[str, bool]] = []
    with titans_serve(home, port, tmp_path / "serve.log", TITANS_MODEL_POLL_SECONDS="0.5") as proc:
        with Load(f"http://127.0.0.1:{port}", threads=2) as load:
            end = time.monotonic() + LOAD_SECONDS
            time.sleep(1.0)
            for _ in range(SWAPS):
                promote(settings, CATEGORY, "2")
                switched.append(("2", _wait_for(load, "2", time.monotonic() + 10)))
                assert manager.rollback_model(CATEGORY, "1", "ann", "zero-downtime test")
                switched.append(("1", _wait_for(load, "1", time.monotonic() + 10)))
            time.sleep(max(0.0, end - time.monotonic()))
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)  # uvicorn's graceful shutdown drains the log
        proc.wait(timeout=30)
    served = Counter(version for version, _ in load.ok)
    assert load.failures == [], load.failures[:5]
    assert all(ok for _, ok in switched), switched  # every swap reached the clients
    assert set(served) == {"1", "2"}, served
    assert len(load.ok) > 100, served  # the load was real
    # one logged row per 200 response, each with the version the client saw
    ids = {pid: version for version, pid in load.ok}
    assert len(ids) == len(load.ok)
    assert _logged_rows(settings) - before == len(load.ok)
    with Store(settings).session() as session:
        logged = dict(
            session.execute(
                select(Prediction.prediction_id, Prediction.model_version).where(
                    Prediction.prediction_id.in_(list(ids)[:2_000])
                )
            ).all()
        )
    assert logged == {pid: ids[pid] for pid in list(ids)[:2_000]}


def test_sigterm_drains_the_prediction_log_before_exit(
    home: Path, free_port: Callable[[], int], tmp_path: Path
) -> None:
    settings = _settings(home)
    before = _logged_rows(settings)
    port = free_port()
    # a flush interval and batch far beyond the test: only the shutdown drain writes rows
    slow_flush: dict[str, Any] = {
        "TITANS_PREDICTION_LOG_FLUSH_SECONDS": "600",
        "TITANS_PREDICTION_LOG_BATCH_SIZE": "100000",
    }
    with titans_serve(home, port, tmp_path / "serve.log", **slow_flush) as proc:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=bearer(RAW)) as client:
            responses = [client.post("/predict/amount", json=TRANSACTION) for _ in range(60)]
        time.sleep(0.5)
        assert _logged_rows(settings) == before  # nothing written yet: it is all queued
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert [r.status_code for r in responses] == [200] * 60
    assert _logged_rows(settings) - before == 60

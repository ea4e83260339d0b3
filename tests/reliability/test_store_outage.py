"""Ops-store outage: the API's Postgres connection runs through a TCP proxy the test cuts while
the API serves. Requests still succeed; the prediction log buffers up to its bound and counts
what it drops beyond it; once the proxy is back, everything buffered is written."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from _support.figures import Figures
from _support.serving import TRANSACTION, bearer
from _support.tcp_proxy import TcpProxy
from reliability.conftest import require_env
from titans.config import Settings
from titans.serving.auth import generate_api_key
from titans.serving.process import ApiProcess
from titans.store import Store
from titans.store.models import Prediction
from titans.store.testing import POSTGRES_ENV, postgres_schema_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAW, KEY = generate_api_key("outage", ["predict"])
QUEUE, BATCH = 40, 10
BEFORE, DURING = 20, 150


def metric(client: httpx.Client, sample: str) -> float:
    """One sample of the API's /metrics, e.g. ``titans_prediction_log_written_total``."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"/metrics has no {sample}")


def _rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Prediction)) or 0)
    finally:
        engine.dispose()


def _rows_reach(url: str, n: int, timeout: float = 60.0) -> int:
    """The row count once it reaches ``n`` (or whatever it is at the bounded deadline)."""
    deadline = time.monotonic() + timeout
    while (rows := _rows(url)) < n and time.monotonic() < deadline:
        time.sleep(0.3)
    return rows


def test_prediction_log_buffers_through_a_postgres_outage(
    registry_copy: Callable[[str], Path], tmp_path: Path, figures: Figures
) -> None:
    base = require_env(POSTGRES_ENV)
    home = registry_copy("store-outage")
    pg = make_url(base)
    with (
        postgres_schema_url(base) as url,
        TcpProxy((pg.host or "127.0.0.1", pg.port or 5432)) as proxy,
    ):
        Store(Settings(home=home, TITANS_DATABASE_URL=url)).upgrade()
        proxied = make_url(url).set(host="127.0.0.1", port=proxy.port)
        env = {
            "TITANS_HOME": str(home),
            "TITANS_DATABASE_URL": proxied.render_as_string(hide_password=False),
            "TITANS_API_KEYS": f"[{KEY.model_dump_json()}]",
            "TITANS_MODEL_POLL_SECONDS": "0",
            "TITANS_PREDICTION_LOG_QUEUE_SIZE": str(QUEUE),
            "TITANS_PREDICTION_LOG_BATCH_SIZE": str(BATCH),
            "TITANS_PREDICTION_LOG_FLUSH_SECONDS": "0.1",
        }
        with (
            ApiProcess(env, log_path=tmp_path / "serve.log") as api,
            httpx.Client(base_url=api.url, headers=bearer(RAW), timeout=30.0) as client,
        ):
            codes = [client.post("/predict/amount", json=TRANSACTION).status_code
                     for _ in range(BEFORE)]  # fmt: skip
            assert _rows_reach(url, BEFORE) == BEFORE
            proxy.cut()
            codes += [client.post("/predict/amount", json=TRANSACTION).status_code
                      for _ in range(DURING)]  # fmt: skip
            depth = metric(client, "titans_prediction_log_queue_depth")
            dropped = metric(client, 'titans_prediction_log_dropped_total{reason="queue_full"}')
            failures = metric(client, "titans_prediction_log_write_failures_total")
            rows_during = _rows(url)
            proxy.restore()
            expected = BEFORE + DURING - int(dropped)
            rows_after = _rows_reach(url, expected)
            written = metric(client, "titans_prediction_log_written_total")
        rows_final = _rows(url)  # after the API's SIGTERM drain
    name = "ops-store outage (Postgres proxy cut)"
    figures.record(name, "requests / non-200", f"{len(codes)} / {len(codes) - codes.count(200)}")
    figures.record(name, "queue bound / depth at peak", f"{QUEUE} (+{BATCH} in flight) / {depth:g}")
    figures.record(name, "dropped (counted) / failed writes", f"{dropped:g} / {failures:g}")
    figures.record(name, "rows during / after recovery", f"{rows_during} / {rows_after}")
    assert codes == [200] * (BEFORE + DURING)
    assert rows_during == BEFORE  # nothing reached the store while it was away
    assert depth <= QUEUE and failures >= 1
    # beyond the queue and the batch held for retry, every record is dropped and counted
    assert DURING - QUEUE - BATCH <= dropped < DURING
    assert rows_after == expected == written
    assert rows_final == rows_after  # nothing half-written or duplicated at shutdown

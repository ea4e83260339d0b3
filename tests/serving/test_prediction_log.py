"""The prediction log writer on SQLite and Postgres: rows written, drops counted, drain, outages."""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from titans.config import Settings
from titans.serving.metrics import ServingMetrics
from titans.serving.prediction_log import PredictionLogWriter, PredictionRecord
from titans.store import Store
from titans.store.models import Prediction


def _record(i: int = 0, **overrides: Any) -> PredictionRecord:
    values: dict[str, Any] = dict(
        model_name="titans-category",
        model_version="3",
        alias="production",
        arm="A",
        entity_id=f"cust-{i % 17}",
        features={"amount": -12.5 - i, "description": f"coffee {i}", "type": "Expense"},
        prediction={"category": "Food & Dining", "probabilities": {"Food & Dining": 0.9}},
        score=0.9,
        latency_ms=1.25,
    )
    values.update(overrides)
    return PredictionRecord(**values)


def _rows(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Prediction)) or 0)


def _ids(store: Store) -> list[str]:
    with store.session() as s:
        return list(s.scalars(select(Prediction.prediction_id)))


def _dropped(metrics: ServingMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "titans_prediction_log_dropped_total", {"reason": reason}
    )
    return float(value or 0.0)


def _wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_n_logged_n_rows_with_every_field(store: Store) -> None:
    metrics = ServingMetrics()
    writer = PredictionLogWriter(
        store, queue_size=1000, batch_size=64, flush_interval=0.05, metrics=metrics
    ).start()
    records = [_record(i) for i in range(300)]
    assert all(writer.log(r) for r in records)
    stats = writer.stop(timeout=10)
    assert (stats.written, stats.dropped, stats.queued) == (300, 0, 0)
    assert sorted(_ids(store)) == sorted(r.prediction_id for r in records)
    assert metrics.registry.get_sample_value("titans_prediction_log_written_total") == 300.0
    assert metrics.registry.get_sample_value("titans_prediction_log_queue_depth") == 0.0

    first = records[0]
    with store.session() as s:
        row = s.get(Prediction, first.prediction_id)
        assert row is not None
        assert (row.model_name, row.model_version, row.alias, row.arm, row.entity_id) == (
            "titans-category",
            "3",
            "production",
            "A",
            "cust-0",
        )
        assert row.features == first.features and row.prediction == first.prediction
        assert row.score == pytest.approx(0.9) and row.latency_ms == pytest.approx(1.25)
        assert row.ts == first.ts


def test_flushes_on_interval_while_running(store: Store) -> None:
    writer = PredictionLogWriter(store, queue_size=100, batch_size=1000, flush_interval=0.1)
    writer.start()
    try:
        for i in range(5):
            writer.log(_record(i))
        # far fewer than batch_size: written anyway once the interval has passed
        assert _wait_for(lambda: _rows(store) == 5, timeout=5)
    finally:
        writer.stop(timeout=5)


def test_same_prediction_id_twice_gives_one_row(store: Store) -> None:
    writer = PredictionLogWriter(store, batch_size=10, flush_interval=0.05).start()
    record = _record(1)
    writer.log(record)
    writer.log(record)  # same batch
    assert _wait_for(lambda: _rows(store) == 1)
    other = _record(2)
    writer.log(record)  # a later batch: e.g. a retry after a commit whose answer was lost
    writer.log(other)
    stats = writer.stop(timeout=5)
    # the record is in the store once; re-inserting it is neither an error nor a drop
    assert (stats.written, stats.dropped) == (4, 0)
    assert sorted(_ids(store)) == sorted([record.prediction_id, other.prediction_id])


def test_full_queue_drops_are_counted_and_log_never_blocks(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = ServingMetrics()
    writer = PredictionLogWriter(store, queue_size=10, batch_size=5, metrics=metrics)
    # not started: nothing consumes the queue, as with a writer stuck behind a dead store
    assert all(writer.log(_record(i)) for i in range(10))
    with caplog.at_level(logging.WARNING, logger="titans.serving.prediction_log"):
        started = time.perf_counter()
        refused = [writer.log(_record(i)) for i in range(10, 15)]
        elapsed = time.perf_counter() - started
    assert refused == [False] * 5
    assert elapsed < 1.0  # a blocking put would hang here forever
    assert _dropped(metrics, "queue_full") == 5.0
    assert metrics.registry.get_sample_value("titans_prediction_log_queue_depth") == 10.0
    assert any("queue is full" in r.getMessage() for r in caplog.records)
    stats = writer.stop(timeout=5)  # drains the 10 accepted records
    assert (stats.written, stats.dropped) == (10, 5)
    assert _rows(store) == 10


def test_stop_drains_everything_queued(store: Store) -> None:
    # a long interval and a big batch: nothing would be written before stop() without draining
    writer = PredictionLogWriter(store, queue_size=5000, batch_size=10_000, flush_interval=60)
    writer.start()
    for i in range(2000):
        writer.log(_record(i))
    started = time.monotonic()
    stats = writer.stop(timeout=20)
    assert time.monotonic() - started < 20  # woken at once, not after the 60 s interval
    assert (stats.written, stats.dropped, stats.queued) == (2000, 0, 0)
    assert _rows(store) == 2000
    assert not writer.log(_record(99_999))  # after stop: refused and counted
    assert writer.stats().dropped == 1


def test_concurrent_producers_all_rows_present(store: Store) -> None:
    writer = PredictionLogWriter(store, queue_size=10_000, batch_size=500, flush_interval=0.05)
    writer.start()
    accepted: list[int] = []
    lock = threading.Lock()

    def produce(thread: int) -> None:
        ok = sum(writer.log(_record(thread * 1000 + i)) for i in range(500))
        with lock:
            accepted.append(ok)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stats = writer.stop(timeout=30)
    assert sum(accepted) == 4000
    assert (stats.written, stats.dropped) == (4000, 0)
    ids = _ids(store)
    assert len(ids) == 4000 and len(set(ids)) == 4000


def _rename_predictions(store: Store, to: str, frm: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {frm} RENAME TO {to}"))


def test_store_outage_keeps_records_and_writes_them_when_it_returns(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = ServingMetrics()
    writer = PredictionLogWriter(
        store,
        queue_size=1000,
        batch_size=50,
        flush_interval=0.05,
        metrics=metrics,
        retry_initial=0.02,
        retry_max=0.1,
    )
    writer.start()
    # the table vanishes (as good as a store that is down for these inserts)
    _rename_predictions(store, to="predictions_away", frm="predictions")
    with caplog.at_level(logging.WARNING, logger="titans.serving.prediction_log"):
        records = [_record(i) for i in range(120)]
        assert all(writer.log(r) for r in records)  # the request path keeps accepting
        assert _wait_for(lambda: writer.stats().failures >= 2, timeout=10)
    assert writer.stats().written == 0 and writer.stats().dropped == 0
    assert (
        metrics.registry.get_sample_value("titans_prediction_log_write_failures_total") or 0
    ) >= 2
    assert any("retrying" in r.getMessage() for r in caplog.records)

    _rename_predictions(store, to="predictions", frm="predictions_away")  # store is back
    assert _wait_for(lambda: writer.stats().written == 120, timeout=10)
    stats = writer.stop(timeout=5)
    assert (stats.written, stats.dropped, stats.queued) == (120, 0, 0)
    assert sorted(_ids(store)) == sorted(r.prediction_id for r in records)


def test_store_still_down_at_shutdown_counts_every_record_as_dropped(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = ServingMetrics()
    writer = PredictionLogWriter(
        store,
        batch_size=20,
        flush_interval=0.05,
        metrics=metrics,
        retry_initial=0.02,
        retry_max=0.05,
    )
    writer.start()
    _rename_predictions(store, to="predictions_away", frm="predictions")
    for i in range(70):
        assert writer.log(_record(i))
    with caplog.at_level(logging.ERROR, logger="titans.serving.prediction_log"):
        stats = writer.stop(timeout=0.5)
    assert (stats.written, stats.dropped, stats.queued) == (0, 70, 0)
    assert _dropped(metrics, "shutdown") == 70.0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("70 records could not be written" in m for m in errors)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_postgres_server_counts_drops_at_shutdown(tmp_path) -> None:
    """A Store whose Postgres port has nothing listening: accepted, retried, then counted."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/titans"
    down = Store(Settings(home=tmp_path, TITANS_DATABASE_URL=url))
    metrics = ServingMetrics()
    writer = PredictionLogWriter(
        down,
        batch_size=10,
        flush_interval=0.05,
        metrics=metrics,
        retry_initial=0.02,
        retry_max=0.05,
    ).start()
    assert all(writer.log(_record(i)) for i in range(25))
    assert _wait_for(lambda: writer.stats().failures >= 1, timeout=10)
    stats = writer.stop(timeout=0.3)
    assert (stats.written, stats.dropped, stats.queued) == (0, 25, 0)
    assert _dropped(metrics, "shutdown") == 25.0
    down.dispose()


def test_a_record_the_store_refuses_is_dropped_alone(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = ServingMetrics()
    writer = PredictionLogWriter(store, batch_size=100, flush_interval=0.05, metrics=metrics)
    good = [_record(i) for i in range(10)]
    bad = _record(5, ts=datetime(2026, 1, 1))  # naive timestamp: the store refuses it
    for r in [*good[:5], bad, *good[5:]]:
        writer.log(r)
    with caplog.at_level(logging.ERROR, logger="titans.serving.prediction_log"):
        stats = writer.stop(timeout=5)  # never started: stop() drains in the caller
    assert (stats.written, stats.dropped) == (10, 1)
    assert _dropped(metrics, "invalid") == 1.0
    assert sorted(_ids(store)) == sorted(r.prediction_id for r in good)
    assert any(bad.prediction_id in r.getMessage() for r in caplog.records)


def test_record_defaults_are_unique_ids_and_aware_utc() -> None:
    a, b = _record(), _record()
    assert a.prediction_id != b.prediction_id and len(a.prediction_id) == 32
    assert a.ts.tzinfo is not None and a.ts.utcoffset() == UTC.utcoffset(None)


def test_from_settings_uses_the_prediction_log_settings(tmp_path, store: Store) -> None:
    settings = Settings(
        home=tmp_path,
        prediction_log_queue_size=7,
        prediction_log_batch_size=3,
        prediction_log_flush_seconds=0.2,
    )
    writer = PredictionLogWriter.from_settings(store, settings)
    assert (writer.queue_size, writer.batch_size, writer.flush_interval) == (7, 3, 0.2)
    assert sum(writer.log(_record(i)) for i in range(9)) == 7


def test_stop_gives_up_on_a_store_that_never_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that accepts the TCP connection and then says nothing: the writer hangs in its
    write; stop() still returns on time and counts the unconfirmed batch and the queue once."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever answers
    port = silent.getsockname()[1]
    hung = Store(
        Settings(home=tmp_path, TITANS_DATABASE_URL=f"postgresql+psycopg://x@127.0.0.1:{port}/x")
    )
    metrics = ServingMetrics()
    writer = PredictionLogWriter(hung, batch_size=10, flush_interval=0.02, metrics=metrics)
    writer.start()
    try:
        for i in range(25):
            assert writer.log(_record(i))
        assert _wait_for(lambda: writer._in_flight > 0, timeout=5)
        with caplog.at_level(logging.ERROR, logger="titans.serving.prediction_log"):
            started = time.monotonic()
            stats = writer.stop(timeout=0.2)
            assert time.monotonic() - started < 5
        assert (stats.written, stats.dropped, stats.queued) == (0, 25, 0)
        assert any("never confirmed" in r.getMessage() for r in caplog.records)
    finally:
        silent.close()  # the hung connect now fails; the writer thread exits
    assert writer._thread is not None
    writer._thread.join(10)
    assert not writer._thread.is_alive()
    assert writer.stats().dropped == 25  # counted once, not again as the thread exits
    assert _dropped(metrics, "shutdown") == 25.0
    hung.dispose()

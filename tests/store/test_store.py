"""The ops store on SQLite and (when TITANS_TEST_POSTGRES_URL is set) Postgres."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from titans.config import Settings
from titans.store import (
    LockTimeout,
    Store,
    StoreError,
    acquire_lock,
    current_revision,
    head_revision,
    make_engine,
    upgrade,
)
from titans.store.models import (
    ABTest,
    ApprovalRequest,
    Base,
    Feedback,
    Lock,
    MonitoringResult,
    MonitorMetric,
    Prediction,
)

TABLES = {
    "audit_entries",
    "audit_heads",
    "approval_requests",
    "locks",
    "predictions",
    "feedback",
    "monitoring_results",
    "alerts",
    "ab_tests",
    "decision_samples",
    "alert_silences",
    "monitor_metrics",
}


def _prediction(pid: str, ts: datetime | None = None) -> Prediction:
    return Prediction(
        prediction_id=pid,
        ts=ts or datetime.now(UTC),
        model_name="titans-category",
        model_version="3",
        alias="production",
        features={"description": "Café ☕ — coffee", "amount": -4.5},
        prediction={"category": "Food & Dining", "probabilities": {"Food & Dining": 0.91}},
        score=0.91,
        latency_ms=1.25,
    )


# ---------------------------------------------------------------- migrations


def test_upgrade_creates_every_table_matching_the_models_and_is_idempotent(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert tables >= TABLES | {"alembic_version"}
    assert store.current_revision() == head_revision()

    assert store.upgrade() == head_revision()  # second run: nothing to do, no error
    assert upgrade(store.url) == head_revision()  # and through the module-level function
    assert current_revision(store.url) == head_revision()

    # the migration builds exactly what the models declare (no drift between the two)
    with store.engine.connect() as conn:
        diffs = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diffs == []


def test_store_migrates_on_first_use_unless_told_not_to(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'ops.db'}"
    settings = Settings(home=tmp_path / "home", TITANS_DATABASE_URL=url)

    manual = Store(settings, auto_migrate=False)
    with pytest.raises(StoreError, match="titans db upgrade"), manual.session():
        pass
    manual.dispose()

    auto = Store(settings)
    with auto.session() as session:
        assert session.scalars(select(Lock)).all() == []
    assert (tmp_path / "nested" / "dir" / "ops.db").exists()
    assert auto.current_revision() == head_revision()
    auto.dispose()


def test_sqlite_engine_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000
    engine.dispose()


def test_unreachable_database_is_one_clear_store_error() -> None:
    with pytest.raises(StoreError) as info:
        upgrade("postgresql+psycopg://nobody:s3cret@127.0.0.1:1/none?connect_timeout=2")
    message = str(info.value)
    assert "TITANS_DATABASE_URL" in message
    assert "s3cret" not in message  # the password is masked
    assert "\n" not in message


def test_invalid_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="TITANS_DATABASE_URL"):
        make_engine("not a url at all")


# ---------------------------------------------------------------- tables


def test_timestamps_come_back_as_the_same_utc_instant(store: Store) -> None:
    cest = timezone(timedelta(hours=2))
    written = datetime(2026, 7, 1, 14, 30, 15, 123456, tzinfo=cest)
    with store.session() as session:
        session.add(_prediction("p-1", written))
    with store.session() as session:
        row = session.get(Prediction, "p-1")
        assert row is not None
        assert row.ts == written
        assert row.ts.tzinfo == UTC
        assert row.ts.hour == 12 and row.ts.microsecond == 123456
        assert row.features["description"] == "Café ☕ — coffee"
        assert row.prediction["probabilities"] == {"Food & Dining": 0.91}

    with pytest.raises(StatementError, match="naive datetime"), store.session() as session:
        session.add(_prediction("p-2", datetime(2026, 7, 1, 12, 0)))


def test_session_rolls_back_everything_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.session() as session:
        session.add(_prediction("p-1"))
        session.flush()
        raise RuntimeError("boom")
    with store.session() as session:
        assert session.get(Prediction, "p-1") is None


def test_feedback_needs_a_logged_prediction_and_is_unique(store: Store) -> None:
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(Feedback(prediction_id="nope", ts=datetime.now(UTC), actual={"c": "x"}))
    with store.session() as session:
        session.add(_prediction("p-1"))
        session.flush()
        session.add(Feedback(prediction_id="p-1", ts=datetime.now(UTC), actual={"c": "x"}))
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(Feedback(prediction_id="p-1", ts=datetime.now(UTC), actual={"c": "y"}))


def _ab(name: str, status: str = "running", traffic_split: float = 0.5) -> ABTest:
    return ABTest(
        name=name,
        model_name="titans-category",
        model_a_version="1",
        model_b_version="2",
        traffic_split=traffic_split,
        salt=uuid.uuid4().hex,
        status=status,
    )


def test_only_one_running_ab_test_per_model(store: Store) -> None:
    with store.session() as session:
        session.add(_ab("old", status="stopped"))
        session.add(_ab("current"))
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(_ab("second-running"))
    with store.session() as session:  # stopping the first frees the slot
        session.execute(text("UPDATE ab_tests SET status = 'stopped' WHERE name = 'current'"))
        session.add(_ab("second-running"))


def test_traffic_split_outside_unit_interval_is_refused(store: Store) -> None:
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(_ab("bad", status="stopped", traffic_split=1.5))


def test_approval_status_is_constrained(store: Store) -> None:
    now = datetime.now(UTC)
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(
            ApprovalRequest(
                id=str(uuid.uuid4()),
                model_name="titans-category",
                model_version="2",
                model_uri="models:/titans-category/2",
                requester="ann",
                justification="better macro F1",
                status="maybe",
                expires_at=now + timedelta(days=1),
            )
        )


# ---------------------------------------------------------------- locks


def test_lock_holders_never_overlap_across_threads(store: Store) -> None:
    intervals: list[tuple[float, float, str]] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def worker(i: int) -> None:
        try:
            for _ in range(4):
                with acquire_lock(store, "promote:titans-category", f"w{i}", 30, 20):
                    start = time.monotonic()
                    time.sleep(0.005)
                    end = time.monotonic()
                with guard:
                    intervals.append((start, end, f"w{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(intervals) == 24
    intervals.sort()
    for (_, end, who), (start, _, nxt) in itertools.pairwise(intervals):
        assert end <= start, f"{who} and {nxt} held the lock at the same time"
    with store.session() as session:
        assert session.scalars(select(Lock)).all() == []  # every holder released


def test_waiting_for_a_held_lock_times_out(store: Store) -> None:
    with acquire_lock(store, "m", "first", ttl_seconds=30):
        began = time.monotonic()
        with (
            pytest.raises(LockTimeout, match="'m' is held"),
            acquire_lock(store, "m", "second", timeout_seconds=0.3),
        ):
            pass
        waited = time.monotonic() - began
    assert 0.3 <= waited < 3
    with acquire_lock(store, "m", "third", timeout_seconds=1) as held:  # free again
        assert held.holder == "third"


def test_expired_lock_of_a_crashed_holder_is_taken_over(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    crashed = acquire_lock(store, "m", "crashed", ttl_seconds=0.3)
    crashed.__enter__()  # never released: its process "died"
    began = time.monotonic()
    with acquire_lock(store, "m", "successor", ttl_seconds=30, timeout_seconds=10) as held:
        assert time.monotonic() - began >= 0.2
        # the crashed holder waking up must not release the successor's lease
        with caplog.at_level(logging.WARNING, logger="titans.store.db"):
            crashed.__exit__(None, None, None)
        assert "another holder took it" in caplog.text
        with store.session() as session:
            row = session.get(Lock, "m")
            assert row is not None and row.token == held.token and row.holder == "successor"


def test_extend_pushes_the_lease_and_notices_a_lost_one(store: Store) -> None:
    with acquire_lock(store, "m", "me", ttl_seconds=0.2) as held:
        held.extend(30)
        time.sleep(0.3)
        # still held after the original 0.2 s: the extension worked
        with pytest.raises(LockTimeout), acquire_lock(store, "m", "other", timeout_seconds=0.1):
            pass
        with store.session() as session:  # someone forcibly clears it
            session.execute(text("DELETE FROM locks"))
        with pytest.raises(StoreError, match="taken by another holder"):
            held.extend(30)


def test_lock_can_be_taken_through_a_session(store: Store) -> None:
    with (
        store.session() as session,
        acquire_lock(session, "m", "via-session") as held,
        store.session() as other,
    ):
        row = other.get(Lock, "m")  # visible to everyone at once, not at the session's commit
        assert row is not None and row.token == held.token
    with store.session() as session:
        assert session.get(Lock, "m") is None


def test_monitor_verdicts_and_kinds_are_constrained(store: Store) -> None:
    now = datetime.now(UTC)
    with store.session() as s:  # the kind added by migration 0003 is accepted
        s.add(MonitoringResult(ts=now, model_name="m", kind="prediction_quality", result={}))
        s.add(MonitorMetric(ts=now, model_name="m", kind="data_drift", metric="x", verdict="ok"))
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(MonitorMetric(ts=now, model_name="m", kind="data_drift", metric="x", verdict="meh"))
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(MonitoringResult(ts=now, model_name="m", kind="vibes", result={}))

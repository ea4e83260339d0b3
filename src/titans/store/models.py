"""Tables of the ops store: everything the MLOps layer keeps outside MLflow.

Timestamps are timezone-aware UTC on the way in and out on every backend; JSON columns are
JSONB on Postgres and JSON text on SQLite. Change a table here only together with a new
alembic revision under ``titans/store/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: constraint names are stable across backends so later migrations can alter them
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: hash a chain starts from: the "previous hash" of the first audit entry
GENESIS_HASH = "0" * 64


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware UTC.

    SQLite keeps no offset, so values are stored as naive UTC there; Postgres uses
    ``timestamptz``. A naive datetime handed in is refused: its meaning is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: JSON document column: JSONB on Postgres (indexable, compact), JSON text elsewhere
JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of the ops store."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


class AuditEntryRow(Base):
    """One link of the tamper-evident audit chain (see ``titans.governance.audit``).

    ``seq`` is assigned by the AuditLogger under the chain's lock rather than by the
    database, so a gap in ``seq`` always means a deleted entry, never a rolled-back insert.
    """

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    model_name: Mapped[str | None] = mapped_column(String(200), index=True)
    model_version: Mapped[str | None] = mapped_column(String(50))
    # plain JSON, not JSONB, on Postgres: JSONB rewrites numbers (1e300 → 1000…0, -0.0 → 0.0),
    # which would change the canonical JSON and break the hash of an untouched entry
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """Checkpoint of the audit chain's head: one row (id 1), updated with every append.

    Appends lock this row first, which serialises writers on every backend; ``verify``
    compares the chain's end against it, so deleting the last entries is detected unless
    this row is rewritten too (keep the head hash elsewhere and pass it as ``expected_head``).
    """

    __tablename__ = "audit_heads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    head_hash: Mapped[str] = mapped_column(String(64), default=GENESIS_HASH)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApprovalRequest(Base):
    """A request to move a model version toward production, and its decision."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'approved', 'rejected', 'expired')", name="status"),
        Index("ix_approval_requests_model_status", "model_name", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(50))
    model_uri: Mapped[str] = mapped_column(String(1000))
    requester: Mapped[str] = mapped_column(String(200))
    justification: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None]
    comment: Mapped[str | None] = mapped_column(Text)


class Lock(Base):
    """A named lease held by one process at a time (see ``titans.store.db.acquire_lock``)."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    #: unique per acquisition, so a holder whose lease expired cannot release its successor's
    token: Mapped[str] = mapped_column(String(32))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class Prediction(Base):
    """One served prediction with the raw input fields it was made from."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_model_ts", "model_name", "ts"),)

    prediction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column(index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(50))
    alias: Mapped[str | None] = mapped_column(String(50))
    arm: Mapped[str | None] = mapped_column(String(20))
    entity_id: Mapped[str | None] = mapped_column(String(200))
    features: Mapped[dict[str, Any]]
    prediction: Mapped[dict[str, Any]]
    score: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)


class Feedback(Base):
    """The actual outcome of one prediction, arriving later."""

    __tablename__ = "feedback"

    prediction_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("predictions.prediction_id", ondelete="CASCADE"), primary_key=True
    )
    ts: Mapped[datetime] = mapped_column(index=True)
    actual: Mapped[dict[str, Any]]


class MonitoringResult(Base):
    """One monitor verdict for one model and window."""

    __tablename__ = "monitoring_results"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('data_drift', 'concept_drift', 'data_quality', 'performance', "
            "'prediction_quality')",
            name="kind",
        ),
        Index("ix_monitoring_results_model_kind_ts", "model_name", "kind", "ts"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(String(20))
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    result: Mapped[dict[str, Any]]
    drifted: Mapped[bool] = mapped_column(Boolean, default=False)


class MonitorMetric(Base):
    """One metric a monitor computed for one model and window: value, threshold and verdict.

    ``verdict`` is ``ok`` or ``breach`` when the metric was judged, ``insufficient`` when the
    window held too little data to judge it, ``unavailable`` when it could not be computed.
    """

    __tablename__ = "monitor_metrics"
    __table_args__ = (
        CheckConstraint(
            "verdict IN ('ok', 'breach', 'insufficient', 'unavailable')", name="verdict"
        ),
        Index("ix_monitor_metrics_model_metric_ts", "model_name", "metric", "ts"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(index=True)
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(String(20))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(16))


class Alert(Base):
    """One alert (by fingerprint) and its notification history."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint("status IN ('firing', 'resolved', 'acknowledged')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default="firing", index=True)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_sent: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    ack_by: Mapped[str | None] = mapped_column(String(200))
    acked_at: Mapped[datetime | None]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ABTest(Base):
    """An A/B (or shadow) test between two versions of one model; one running per model."""

    __tablename__ = "ab_tests"
    __table_args__ = (
        CheckConstraint("mode IN ('split', 'shadow')", name="mode"),
        CheckConstraint("status IN ('running', 'stopped', 'decided')", name="status"),
        CheckConstraint("traffic_split >= 0 AND traffic_split <= 1", name="traffic_split"),
        # the database itself refuses a second running test for the same model
        Index(
            "uq_ab_tests_running_model",
            "model_name",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    model_a_version: Mapped[str] = mapped_column(String(50))
    model_b_version: Mapped[str] = mapped_column(String(50))
    traffic_split: Mapped[float] = mapped_column(Float)
    mode: Mapped[str] = mapped_column(String(10), default="split")
    salt: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]
    decision: Mapped[dict[str, Any] | None]


class DecisionSample(Base):
    """A sampled model decision kept for compliance review (governance)."""

    __tablename__ = "decision_samples"
    __table_args__ = (Index("ix_decision_samples_model_ts", "model_name", "ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(50))
    input_hash: Mapped[str] = mapped_column(String(64))
    output: Mapped[dict[str, Any]]


class AlertSilence(Base):
    """A silence: alerts whose labels match ``matchers`` are recorded but not notified until
    ``ends_at`` (see ``titans.monitoring.alerts``)."""

    __tablename__ = "alert_silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: label name -> exact value; an alert is silenced when every pair matches its labels
    matchers: Mapped[dict[str, Any]]
    starts_at: Mapped[datetime] = mapped_column(default=utcnow)
    ends_at: Mapped[datetime] = mapped_column(index=True)
    created_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")

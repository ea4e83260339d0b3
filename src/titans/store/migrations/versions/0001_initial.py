"""Initial ops store: audit chain, approvals, locks, predictions, feedback, monitoring,
alerts, A/B tests and decision samples.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen copies of the column types: a migration must not change when models.py does
TS = sa.DateTime(timezone=True)
JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=True),
        sa.Column("model_version", sa.String(50), nullable=True),
        # JSON text, not JSONB: JSONB rewrites numbers and would break the hash chain
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint("entry_hash", name=op.f("uq_audit_entries_entry_hash")),
    )
    op.create_index(op.f("ix_audit_entries_ts"), "audit_entries", ["ts"])
    op.create_index(op.f("ix_audit_entries_action"), "audit_entries", ["action"])
    op.create_index(op.f("ix_audit_entries_model_name"), "audit_entries", ["model_name"])

    op.create_table(
        "audit_heads",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_heads")),
    )
    # the row every append locks first; created here so the first writers never race for it
    op.execute(
        sa.text(
            "INSERT INTO audit_heads (id, seq, head_hash, updated_at) "
            "VALUES (1, 0, :genesis, CURRENT_TIMESTAMP)"
        ).bindparams(genesis=GENESIS_HASH)
    )

    op.create_table(
        "approval_requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("model_uri", sa.String(1000), nullable=False),
        sa.Column("requester", sa.String(200), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'expired')",
            name=op.f("ck_approval_requests_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_requests")),
    )
    op.create_index(op.f("ix_approval_requests_status"), "approval_requests", ["status"])
    op.create_index(
        "ix_approval_requests_model_status", "approval_requests", ["model_name", "status"]
    )

    op.create_table(
        "locks",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_locks")),
    )

    op.create_table(
        "predictions",
        sa.Column("prediction_id", sa.String(64), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("alias", sa.String(50), nullable=True),
        sa.Column("arm", sa.String(20), nullable=True),
        sa.Column("entity_id", sa.String(200), nullable=True),
        sa.Column("features", JSONDoc, nullable=False),
        sa.Column("prediction", JSONDoc, nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("prediction_id", name=op.f("pk_predictions")),
    )
    op.create_index(op.f("ix_predictions_ts"), "predictions", ["ts"])
    op.create_index("ix_predictions_model_ts", "predictions", ["model_name", "ts"])

    op.create_table(
        "feedback",
        sa.Column("prediction_id", sa.String(64), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("actual", JSONDoc, nullable=False),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.prediction_id"],
            name=op.f("fk_feedback_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("prediction_id", name=op.f("pk_feedback")),
    )
    op.create_index(op.f("ix_feedback_ts"), "feedback", ["ts"])

    op.create_table(
        "monitoring_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("window_start", TS, nullable=True),
        sa.Column("window_end", TS, nullable=True),
        sa.Column("result", JSONDoc, nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('data_drift', 'concept_drift', 'data_quality', 'performance')",
            name=op.f("ck_monitoring_results_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitoring_results")),
    )
    op.create_index(op.f("ix_monitoring_results_ts"), "monitoring_results", ["ts"])
    op.create_index(
        "ix_monitoring_results_model_kind_ts", "monitoring_results", ["model_name", "kind", "ts"]
    )

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_sent", TS, nullable=True),
        sa.Column("escalated_at", TS, nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("ack_by", sa.String(200), nullable=True),
        sa.Column("acked_at", TS, nullable=True),
        sa.Column("details", JSONDoc, nullable=False),
        sa.CheckConstraint(
            "status IN ('firing', 'resolved', 'acknowledged')", name=op.f("ck_alerts_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_fingerprint"), "alerts", ["fingerprint"])
    op.create_index(op.f("ix_alerts_status"), "alerts", ["status"])

    op.create_table(
        "ab_tests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_a_version", sa.String(50), nullable=False),
        sa.Column("model_b_version", sa.String(50), nullable=False),
        sa.Column("traffic_split", sa.Float(), nullable=False),
        sa.Column("mode", sa.String(10), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("decision", JSONDoc, nullable=True),
        sa.CheckConstraint("mode IN ('split', 'shadow')", name=op.f("ck_ab_tests_mode")),
        sa.CheckConstraint(
            "status IN ('running', 'stopped', 'decided')", name=op.f("ck_ab_tests_status")
        ),
        sa.CheckConstraint(
            "traffic_split >= 0 AND traffic_split <= 1", name=op.f("ck_ab_tests_traffic_split")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ab_tests")),
        sa.UniqueConstraint("name", name=op.f("uq_ab_tests_name")),
    )
    op.create_index(op.f("ix_ab_tests_model_name"), "ab_tests", ["model_name"])
    op.create_index(
        "uq_ab_tests_running_model",
        "ab_tests",
        ["model_name"],
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )

    op.create_table(
        "decision_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("input_hash", sa.String(64), nullable=False),
        sa.Column("output", JSONDoc, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decision_samples")),
    )
    op.create_index(op.f("ix_decision_samples_ts"), "decision_samples", ["ts"])
    op.create_index("ix_decision_samples_model_ts", "decision_samples", ["model_name", "ts"])


def downgrade() -> None:
    for table in (
        "decision_samples",
        "ab_tests",
        "alerts",
        "monitoring_results",
        "feedback",
        "predictions",
        "locks",
        "approval_requests",
        "audit_heads",
        "audit_entries",
    ):
        op.drop_table(table)

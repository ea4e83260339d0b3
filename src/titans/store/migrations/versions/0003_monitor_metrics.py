"""Monitor metrics: one row per (window, model, metric) verdict; prediction quality results.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen copies of the column types: a migration must not change when models.py does
TS = sa.DateTime(timezone=True)

KINDS_BEFORE = "kind IN ('data_drift', 'concept_drift', 'data_quality', 'performance')"
KINDS_AFTER = (
    "kind IN ('data_drift', 'concept_drift', 'data_quality', 'performance', 'prediction_quality')"
)


def upgrade() -> None:
    op.create_table(
        "monitor_metrics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("window_start", TS, nullable=True),
        sa.Column("window_end", TS, nullable=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.CheckConstraint(
            "verdict IN ('ok', 'breach', 'insufficient', 'unavailable')",
            name=op.f("ck_monitor_metrics_verdict"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_metrics")),
    )
    op.create_index(op.f("ix_monitor_metrics_ts"), "monitor_metrics", ["ts"])
    op.create_index(
        "ix_monitor_metrics_model_metric_ts", "monitor_metrics", ["model_name", "metric", "ts"]
    )
    with op.batch_alter_table("monitoring_results") as batch:
        batch.drop_constraint(op.f("ck_monitoring_results_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_monitoring_results_kind"), sa.text(KINDS_AFTER))


def downgrade() -> None:
    with op.batch_alter_table("monitoring_results") as batch:
        batch.drop_constraint(op.f("ck_monitoring_results_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_monitoring_results_kind"), sa.text(KINDS_BEFORE))
    op.drop_table("monitor_metrics")

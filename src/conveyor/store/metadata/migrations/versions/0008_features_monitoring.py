"""features and monitoring: feature specs and services, alert states, incident handling, windows

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 03:10:00

Additive: new nullable columns on ``feature_definition``, ``alert`` and ``incident`` (created by
0001, unused until now) and two new tables, ``feature_service`` and ``monitoring_window``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from conveyor.store.metadata.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("feature_definition", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("source", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("spec", _json(), nullable=True))
    op.create_table(
        "feature_service",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=80), nullable=False),
        sa.Column("features", _json(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_feature_service")),
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("evidence", _json(), nullable=True))
        batch_op.add_column(sa.Column("fired_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("resolved_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("updated_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("incident_id", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_alert_model_rule", ["model", "rule"], unique=False)
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rule", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("runbook", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("acked_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("acked_by", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("resolved_by", sa.String(length=128), nullable=True))
    op.create_table(
        "monitoring_window",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("start", UTCDateTime(), nullable=False),
        sa.Column("end", UTCDateTime(), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitoring_window")),
    )
    with op.batch_alter_table("monitoring_window", schema=None) as batch_op:
        batch_op.create_index("ix_monitoring_window_model_start", ["model", "start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("monitoring_window", schema=None) as batch_op:
        batch_op.drop_index("ix_monitoring_window_model_start")
    op.drop_table("monitoring_window")
    with op.batch_alter_table("incident", schema=None) as batch_op:
        for column in ("resolved_by", "acked_by", "acked_at", "runbook", "rule"):
            batch_op.drop_column(column)
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_model_rule")
        for column in ("incident_id", "updated_at", "resolved_at", "fired_at", "evidence", "model"):
            batch_op.drop_column(column)
    op.drop_table("feature_service")
    with op.batch_alter_table("feature_definition", schema=None) as batch_op:
        for column in ("spec", "source", "description"):
            batch_op.drop_column(column)

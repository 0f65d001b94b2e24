"""serving and progressive delivery: rollouts, routing, serving telemetry windows

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 23:30:00

Written by hand, additive only, so a store at 0003 keeps every row:

* ``deployment`` (a rollout): the current step and when it began, the consecutive failed
  analyses, a revision counter for compare-and-set, the analysis settings, who started it and
  why, and when it ended.
* ``routing``: per model, the desired split between its production version and a canary or
  shadow version. Servers poll it and converge; a restarted server resumes from it.
* ``serving_window``: what each server replica saw for each version in each ~1 s window
  (counts, latency histogram and samples, prediction samples, feedback, shadow comparisons),
  read by the rollout analysis.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from conveyor.store.metadata.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("deployment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("step_started_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("failures", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("settings", _json(), nullable=True))
        batch_op.add_column(sa.Column("actor", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("ended_at", UTCDateTime(), nullable=True))

    op.create_table(
        "routing",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("canary_version", sa.Integer(), nullable=True),
        sa.Column("canary_weight", sa.Float(), nullable=False),
        sa.Column("shadow_version", sa.Integer(), nullable=True),
        sa.Column("shadow_sample", sa.Float(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", name=op.f("pk_routing")),
    )

    op.create_table(
        "serving_window",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("replica", sa.String(length=64), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=False),
        sa.Column("summary", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serving_window")),
    )
    with op.batch_alter_table("serving_window", schema=None) as batch_op:
        batch_op.create_index(
            "ix_serving_window_model_ended_at", ["model", "ended_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("serving_window", schema=None) as batch_op:
        batch_op.drop_index("ix_serving_window_model_ended_at")
    op.drop_table("serving_window")
    op.drop_table("routing")
    with op.batch_alter_table("deployment", schema=None) as batch_op:
        for column in (
            "ended_at",
            "reason",
            "actor",
            "settings",
            "revision",
            "failures",
            "step_started_at",
            "step",
        ):
            batch_op.drop_column(column)

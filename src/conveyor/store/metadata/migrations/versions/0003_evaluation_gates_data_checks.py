"""evaluation and gates: evaluations tied to data and config, policy digests, data checks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 20:10:00

Written by hand, additive only (new nullable columns, a new table, new indexes), so a store at
0002 keeps every row:

* ``evaluation``: the digest of the evaluation settings (slices, sensitive attributes, threshold,
  bins), the artifact holding the per-row predictions (so a later comparison with another version
  on the same dataset version can be paired without predicting again), and the full report
  (calibration curve, slices, fairness by group).
* ``gate_result``: the digest of the policy file the check came from, and the dataset version
  the observed number was measured on.
* ``approval``: the reviewer's role when the review was given; reviews are looked up by version
  and stage.
* ``dataset_check``: one row per finding of a data check (schema, quality, drift, leakage) of a
  dataset version, against a reference dataset version when there is one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from conveyor.store.metadata.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("evaluation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config_digest", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("predictions_digest", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("report", _json(), nullable=True))
        batch_op.create_index(
            "ix_evaluation_model_version_dataset_version",
            ["model", "version", "dataset_version"],
            unique=False,
        )

    with op.batch_alter_table("gate_result", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policy_digest", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("dataset_version", sa.String(length=80), nullable=True))

    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=32), nullable=True))
        batch_op.create_index(
            "ix_approval_model_version_stage", ["model", "version", "stage"], unique=False
        )

    op.create_table(
        "dataset_check",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_version", sa.String(length=80), nullable=False),
        sa.Column("reference_version", sa.String(length=80), nullable=True),
        sa.Column("check", sa.String(length=128), nullable=False),
        sa.Column("column", sa.String(length=256), nullable=True),
        sa.Column("blocking", sa.Boolean(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("observed", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("details", _json(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_check")),
    )
    with op.batch_alter_table("dataset_check", schema=None) as batch_op:
        batch_op.create_index("ix_dataset_check_dataset_version", ["dataset_version"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dataset_check", schema=None) as batch_op:
        batch_op.drop_index("ix_dataset_check_dataset_version")
    op.drop_table("dataset_check")

    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.drop_index("ix_approval_model_version_stage")
        batch_op.drop_column("role")

    with op.batch_alter_table("gate_result", schema=None) as batch_op:
        batch_op.drop_column("dataset_version")
        batch_op.drop_column("policy_digest")

    with op.batch_alter_table("evaluation", schema=None) as batch_op:
        batch_op.drop_index("ix_evaluation_model_version_dataset_version")
        batch_op.drop_column("report")
        batch_op.drop_column("predictions_digest")
        batch_op.drop_column("config_digest")

"""lineage: one edge table for the whole graph, filled from the facts already recorded

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 23:40:00

Creates ``lineage_edge`` (primary key src, dst, relation; an index on dst, src for upstream
queries) and derives the edges of everything recorded before it, with the same rules the
writers use from now on (see ``conveyor.store.metadata.lineage``): run inputs and outputs of
executed (not cached) runs, the run and bundle of every model version, the model and dataset of
every evaluation.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BACKFILL = (
    # A data file or an upstream output read by an executed run.
    """INSERT INTO lineage_edge (src, dst, relation, created_at)
       SELECT DISTINCT CASE WHEN i.kind = 'file' THEN 'dataset:' ELSE i.kind || ':' END || i.ref,
              'run:' || r.id, 'input', r.started_at
       FROM run_input i JOIN run r ON r.id = i.run_id
       WHERE r.cache_hit = {false}""",
    """INSERT INTO lineage_edge (src, dst, relation, created_at)
       SELECT DISTINCT 'run:' || r.id, 'artifact:' || o.ref, 'output', r.started_at
       FROM run_output o JOIN run r ON r.id = o.run_id
       WHERE r.cache_hit = {false}""",
    """INSERT INTO lineage_edge (src, dst, relation, created_at)
       SELECT DISTINCT 'run:' || run_id, 'model:' || model || '/' || CAST(version AS VARCHAR(16)),
              'trained', created_at
       FROM model_version WHERE run_id IS NOT NULL""",
    """INSERT INTO lineage_edge (src, dst, relation, created_at)
       SELECT DISTINCT 'artifact:' || artifact_digest,
              'model:' || model || '/' || CAST(version AS VARCHAR(16)), 'bundle', created_at
       FROM model_version WHERE 1 = 1""",
    """INSERT INTO lineage_edge (src, dst, relation, created_at)
       SELECT DISTINCT 'model:' || model || '/' || CAST(version AS VARCHAR(16)),
              'evaluation:' || CAST(id AS VARCHAR(16)), 'evaluated', created_at
       FROM evaluation WHERE 1 = 1""",
    """INSERT INTO lineage_edge (src, dst, relation, created_at)
       SELECT DISTINCT 'dataset:' || dataset_version, 'evaluation:' || CAST(id AS VARCHAR(16)),
              'evaluated_on', created_at
       FROM evaluation WHERE 1 = 1""",
)


def upgrade() -> None:
    op.create_table(
        "lineage_edge",
        sa.Column("src", sa.String(length=600), nullable=False),
        sa.Column("dst", sa.String(length=600), nullable=False),
        sa.Column("relation", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("src", "dst", "relation", name=op.f("pk_lineage_edge")),
    )
    with op.batch_alter_table("lineage_edge", schema=None) as batch_op:
        batch_op.create_index("ix_lineage_edge_dst_src", ["dst", "src"], unique=False)
    false = "false" if op.get_bind().dialect.name == "postgresql" else "0"
    for statement in _BACKFILL:
        # DISTINCT and ON CONFLICT: two rows of one source can give the same edge (a run
        # reading a file twice under two names). Every SELECT has a WHERE clause: SQLite
        # needs one before ON CONFLICT in INSERT ... SELECT.
        op.execute(statement.format(false=false) + " ON CONFLICT DO NOTHING")


def downgrade() -> None:
    with op.batch_alter_table("lineage_edge", schema=None) as batch_op:
        batch_op.drop_index("ix_lineage_edge_dst_src")
    op.drop_table("lineage_edge")

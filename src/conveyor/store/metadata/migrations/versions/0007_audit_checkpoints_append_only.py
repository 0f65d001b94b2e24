"""audit trail: signed checkpoints, and append-only audit tables enforced by the database

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 00:10:00

Additive: a new table (``audit_checkpoint``, see :mod:`conveyor.store.metadata.audit`) and
triggers that refuse UPDATE and DELETE on ``audit_event`` and ``audit_checkpoint``. On
PostgreSQL the application's role owns its tables, so a REVOKE would not bind it: a trigger
does, until someone with DDL rights drops it (what they change then is still caught by the hash
chain and the checkpoints). TRUNCATE is not refused: it fires no row trigger, and refusing it
would also refuse emptying a test or scratch database; cutting the chain short is what the
checkpoints detect. On SQLite, ``RAISE(ABORT, ...)`` inside a BEFORE trigger rolls back the
statement.

A later migration that rebuilds ``audit_event`` on SQLite (``batch_alter_table`` copies the
table) must create these triggers again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TABLES = ("audit_event", "audit_checkpoint")
_PG_FUNCTION = "conveyor_refuse_audit_change"


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.String(length=80), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoint")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$
            """
        )
        for table in _TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                f" FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()"
            )
    else:
        for table in _TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}"
                    f" BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {_PG_FUNCTION}()")
    else:
        for table in _TABLES:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
    op.drop_table("audit_checkpoint")

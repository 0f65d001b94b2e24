"""alert.window_end: the end of the newest monitoring window an alert rule read

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 07:00:00

Until now the row kept it in ``labels`` (``{"window_id": ..., "window_end": ...}``), a column
meant for the alert's labels. The value moves to its own column; ``labels`` is emptied where it
only held that. The downgrade puts it back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.schema import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_alert = sa.table(
    "alert",
    sa.column("id", sa.Integer()),
    sa.column("labels", sa.JSON()),
    sa.column("window_end", UTCDateTime()),
)


def _when(labels: Any) -> dt.datetime | None:
    seen = labels.get("window_end") if isinstance(labels, dict) else None
    if not isinstance(seen, str):
        return None
    try:
        at = dt.datetime.fromisoformat(seen)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def upgrade() -> None:
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.add_column(sa.Column("window_end", UTCDateTime(), nullable=True))
    conn = op.get_bind()
    for row in conn.execute(sa.select(_alert.c.id, _alert.c.labels)).all():
        at = _when(row.labels)
        if at is not None:
            conn.execute(
                sa.update(_alert)
                .where(_alert.c.id == row.id)
                .values(window_end=at, labels=sa.null())
            )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(_alert.c.id, _alert.c.window_end)).all()
    for row in rows:
        if row.window_end is not None:
            conn.execute(
                sa.update(_alert)
                .where(_alert.c.id == row.id)
                .values(labels={"window_end": row.window_end.isoformat()})
            )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_column("window_end")

"""Small statement helpers that must behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects import postgresql, sqlite

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["insert_ignore"]


def insert_ignore(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows, silently keeping the existing row where the primary key is already taken.

    Used for immutable, content-addressed rows (artifacts, dataset versions), where a second
    insert of the same key is by definition the same row.
    """
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)

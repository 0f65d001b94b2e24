"""Bringing a database's schema up to date with the Alembic migrations shipped in the package.

Alembic is imported only when the database is behind: the usual case (schema current) costs one
small query, which keeps commands such as a no-op ``conveyor run`` fast.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

__all__ = ["HEAD_REVISION", "ensure_schema", "upgrade"]

#: The newest migration; a test checks that it equals Alembic's head.
HEAD_REVISION = "0009"
_MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant will do, as long as every Conveyor process uses the same one.
_MIGRATION_LOCK_KEY = 0x436F6E6D  # "Conm"


def _current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
        return row[0] if row else None


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Run Alembic's upgrade to ``revision`` on ``engine``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    # Two processes opening a new database at once must not both create the tables: migrate in
    # a serialised transaction (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), in
    # which Alembic reads the revision only once the lock is held and so finds the schema current.
    with engine.connect() as raw:
        conn = raw.execution_options(conveyor_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)


def ensure_schema(engine: sa.Engine) -> None:
    """Create or upgrade the schema if it is not at :data:`HEAD_REVISION`."""
    if _current_revision(engine) != HEAD_REVISION:
        upgrade(engine)

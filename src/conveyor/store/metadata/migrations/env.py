"""Alembic environment: runs on the connection Conveyor hands over (see migrations_runner)."""

from __future__ import annotations

from alembic import context

from conveyor.store.metadata.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through conveyor.store.metadata.upgrade(), not alembic's CLI"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

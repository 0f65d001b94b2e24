"""Copying a whole metadata store into an empty database: SQLite to PostgreSQL, when a team
outgrows a laptop (``conveyor store migrate``).

The copy is exact, row for row, with the source's own keys: no row is re-numbered, and no event
is appended for the copy itself, so the target's audit chain ends at the very hash the source's
ends at. That equality, and every signed checkpoint (stored in the database and mirrored in the
project folder) verifying on the target, is what shows nothing was lost or changed on the way.

- The target must be empty: a database with rows, or with tables that are not Conveyor's, is
  refused before anything is written. Its schema is created by the same migrations as any new
  store, never from the source's DDL, so a PostgreSQL target gets PostgreSQL's types, indexes
  and the append-only triggers of the audit log.
- The source is read in one snapshot (one read transaction) and written in one target
  transaction, table by table in foreign-key order, in batches (``executemany``): a copy that
  fails at any point leaves the target as empty as it was.
- Integer keys the database numbers itself (``SERIAL``/identity on PostgreSQL) are copied as they
  are, and each sequence is then moved past the largest copied key, or the first new row after
  the migration would collide with a copied one.
- Before the commit, the row count of every table is compared with the source's, and the
  target's audit chain is verified and its head compared; any difference rolls it all back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from conveyor.core.errors import ConflictError, IntegrityError, UsageError
from conveyor.store.metadata import schema
from conveyor.store.metadata.audit import chain_head, verify_chain
from conveyor.store.metadata.migrations_runner import ensure_schema

if TYPE_CHECKING:
    from conveyor.store.metadata.store import MetadataStore

__all__ = ["TransferReport", "copy_store"]

#: Rows read and inserted per round trip: large enough that round trips do not dominate, small
#: enough that a batch of wide rows (run parameters, evaluation slices) stays a few MB.
DEFAULT_BATCH = 1000
_BOOKKEEPING = frozenset({"alembic_version"})


@dataclass(frozen=True)
class TransferReport:
    """What a copy moved: rows per table (in the order copied), and how long it took."""

    source: str
    target: str
    tables: dict[str, int]
    audit_events: int
    audit_head: str
    seconds: float

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def copy_store(
    source: MetadataStore,
    target: MetadataStore,
    *,
    actor: str,
    batch_size: int = DEFAULT_BATCH,
) -> TransferReport:
    """Copy every row of ``source`` into the empty ``target``, in one transaction.

    Both stores must be open; ``target`` may have been opened with ``migrate=False`` (its schema
    is created here). ``source`` must be at the current schema (opening it migrates it).

    Raises:
        UsageError: source and target are the same database, or ``batch_size`` is not positive.
        ConflictError: the target is not empty (it has rows, or tables that are not Conveyor's).
        IntegrityError: after the copy, a table's row count or the audit chain's head differs
            from the source's, or the chain does not verify; nothing is committed.
        InfrastructureError: either database cannot be reached.
    """
    if batch_size < 1:
        raise UsageError(f"batch size {batch_size} is not a positive number of rows")
    if source.engine.url == target.engine.url:
        raise UsageError(
            f"source and target are the same database ({target.url})",
            hint="give --to the URL of a new, empty database",
        )
    started = time.perf_counter()
    _refuse_foreign_tables(target)
    ensure_schema(target.engine)
    tables = schema.metadata.sorted_tables  # parents before children
    copied: dict[str, int] = {}
    with source.read() as src, target.write(actor) as tx:
        dst = tx.conn
        _refuse_rows(dst, target.url)
        expected = {t.name: _count(src, t) for t in tables}
        for table in tables:
            copied[table.name] = _copy_table(src, dst, table, batch_size)
        if dst.dialect.name == "postgresql":
            for table in tables:
                _advance_sequences(dst, table)
        _check(src, dst, expected, target.url)
        seq, head = chain_head(dst)
    return TransferReport(
        source=source.url,
        target=target.url,
        tables=copied,
        audit_events=seq,
        audit_head=head,
        seconds=time.perf_counter() - started,
    )


def _refuse_foreign_tables(target: MetadataStore) -> None:
    with target.read() as conn:
        present = set(sa.inspect(conn).get_table_names())
    foreign = sorted(present - set(schema.metadata.tables) - _BOOKKEEPING)
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise ConflictError(
            f"target database {target.url} is not empty: it has tables that are not "
            f"Conveyor's ({shown})",
            hint="migrate into a new, empty database (e.g. `createdb conveyor`)",
        )


def _refuse_rows(conn: sa.Connection, url: str) -> None:
    for table in schema.metadata.sorted_tables:
        if conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first():
            raise ConflictError(
                f"target database {url} is not empty: table {table.name} has rows",
                hint="migrate into a new, empty database; a migration never merges two stores",
            )


def _count(conn: sa.Connection, table: sa.Table) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _copy_table(src: sa.Connection, dst: sa.Connection, table: sa.Table, batch: int) -> int:
    json_columns = [c.name for c in table.columns if isinstance(c.type, sa.JSON)]
    # In key order: the audit chain goes in by seq, and a rerun copies the same batches. JSON
    # columns are read as their text: decoded, a SQL NULL and a JSON null are both None.
    query = sa.select(
        *(sa.cast(c, sa.Text).label(c.name) if c.name in json_columns else c for c in table.columns)
    ).order_by(*table.primary_key.columns)
    insert = _exact_json(table).insert() if json_columns else table.insert()
    copied = 0
    result = src.execution_options(yield_per=batch).execute(query)
    for rows in result.mappings().partitions(batch):
        values = [dict(row) for row in rows]
        for row in values:
            for name in json_columns:
                row[name] = _json_value(row[name])
        dst.execute(insert, values)
        copied += len(rows)
    return copied


def _exact_json(table: sa.Table) -> sa.Table:
    """``table`` for inserting only, its JSON columns keeping SQL NULL and JSON null apart."""
    exact = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    return sa.Table(
        table.name,
        sa.MetaData(),
        *(
            sa.Column(c.name, exact if isinstance(c.type, sa.JSON) else c.type)
            for c in table.columns
        ),
    )


def _json_value(text: str | None) -> Any:
    if text is None:
        return None  # SQL NULL (the insert's JSON type has none_as_null)
    value = json.loads(text)
    return sa.JSON.NULL if value is None else value


def _advance_sequences(conn: sa.Connection, table: sa.Table) -> None:
    for column in table.primary_key.columns:
        if not isinstance(column.type, sa.Integer):
            continue
        sequence = conn.execute(
            sa.select(sa.func.pg_get_serial_sequence(table.name, column.name))
        ).scalar()
        if sequence is None:  # keys the application chooses (model_version.version, seq)
            continue
        largest = conn.execute(sa.select(sa.func.max(column))).scalar()
        # setval(seq, n, false): the next value handed out is n itself.
        conn.execute(sa.select(sa.func.setval(sequence, (largest or 0) + 1, False)))


def _check(src: sa.Connection, dst: sa.Connection, expected: dict[str, int], url: str) -> None:
    differing = {
        name: (rows, got)
        for name, rows in expected.items()
        if (got := _count(dst, schema.metadata.tables[name])) != rows
    }
    if differing:
        shown = ", ".join(f"{n}: {a} in the source, {b} copied" for n, (a, b) in differing.items())
        raise IntegrityError(
            f"copy into {url} is incomplete ({shown}); nothing was committed",
            hint="was the source written to during the copy? stop its writers and run it again",
        )
    report = verify_chain(dst)
    if not report.ok or chain_head(dst) != chain_head(src):
        raise IntegrityError(
            f"the audit chain copied into {url} does not match the source's "
            f"({report.reason or 'a different head'}); nothing was committed",
            hint="run `conveyor audit verify` on the source first",
        )

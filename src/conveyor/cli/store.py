"""``conveyor store ...``: the metadata store itself; ``migrate`` copies it into a new database."""

from __future__ import annotations

import json

import click

from conveyor.cli._common import console, open_from_context
from conveyor.core.identity import current_user

__all__ = ["store"]


@click.group()
def store() -> None:
    """The metadata store: move it to another database (SQLite to PostgreSQL)."""


@store.command()
@click.option(
    "--to",
    "to_url",
    required=True,
    metavar="URL",
    help="The new, empty database, e.g. postgresql+psycopg://conveyor@db/conveyor.",
)
@click.option(
    "--from",
    "from_url",
    metavar="URL",
    help="The store to copy (default: this project's store).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Rows per insert round trip.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def migrate(
    ctx: click.Context, to_url: str, from_url: str | None, batch_size: int, as_json: bool
) -> None:
    """Copy every row of the store into the empty database at --to, in one transaction.

    The target's schema comes from Conveyor's migrations; rows keep their keys, so the audit
    chain and its signed checkpoints verify on the target. A target with rows is refused, and
    the copy is rolled back if any table's row count differs from the source's. Stop the
    writers (servers, `conveyor rollout run`) first; afterwards point CONVEYOR_STORE (or
    `store:` in conveyor.yaml) at the new database and run `conveyor audit verify`.
    """
    from conveyor.store.metadata import MetadataStore
    from conveyor.store.metadata.transfer import copy_store

    with open_from_context(ctx) as project:
        source = project.metadata if from_url is None else MetadataStore.open(from_url)
        try:
            target = MetadataStore.open(to_url, migrate=False)
            try:
                report = copy_store(source, target, actor=current_user(), batch_size=batch_size)
            finally:
                target.close()
        finally:
            if source is not project.metadata:
                source.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "source": report.source,
                    "target": report.target,
                    "rows": report.rows,
                    "tables": report.tables,
                    "audit_events": report.audit_events,
                    "audit_head": report.audit_head,
                    "seconds": round(report.seconds, 3),
                },
                indent=2,
            )
        )
        return
    out = console()
    for name, rows in report.tables.items():
        if rows:
            out.print(f"  {name}: {rows}")
    out.print(
        f"copied {report.rows} rows in {len(report.tables)} tables from {report.source} to "
        f"{report.target} in {report.seconds:.2f} s; audit chain: {report.audit_events} events, "
        f"same head as the source"
    )
    out.print(
        "next: point CONVEYOR_STORE (or `store:` in conveyor.yaml) at the new database and run "
        "`conveyor audit verify`"
    )

"""``conveyor audit ...``: verify and read the tamper-evident audit trail."""

from __future__ import annotations

import datetime as dt
import json

import click

from conveyor.cli._common import console, open_from_context
from conveyor.core.errors import CheckFailedError, UsageError

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """The audit trail: every state change, hash-chained."""


@audit.command()
@click.pass_context
def verify(ctx: click.Context) -> None:
    """Check every link of the chain; exit 1 and name the first broken event if one fails."""
    from conveyor.project import verify_audit

    with open_from_context(ctx) as project:
        report = verify_audit(project)
    if not report.ok:
        raise CheckFailedError(
            f"audit trail broken at event {report.broken_seq}: {report.reason}",
            hint="events from there on cannot be trusted; restore the store from a backup",
            details={"events": report.events, "broken_seq": report.broken_seq},
        )
    console().print(f"audit trail intact: {report.events} events, head {report.head[:23]}...")


def _parse_since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(
            f"--since {value!r} is not a date or time", hint="use ISO 8601, e.g. 2026-11-26T14:00"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@audit.command()
@click.option("--since", default=None, help="Only events at or after this ISO time (UTC).")
@click.option("--action", default=None, help="Only actions starting with this, e.g. model.")
@click.option("--target", default=None, help="Only targets starting with this, e.g. model:churn.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_context
def log(
    ctx: click.Context,
    since: str | None,
    action: str | None,
    target: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show audit events, oldest first."""
    from rich.table import Table

    from conveyor.project import audit_log

    with open_from_context(ctx) as project:
        events = audit_log(
            project, since=_parse_since(since), action=action, target=target, limit=limit
        )
    if as_json:
        for e in events:
            click.echo(
                json.dumps(
                    {
                        "seq": e.seq,
                        "at": e.at.isoformat(),
                        "actor": e.actor,
                        "action": e.action,
                        "target": e.target,
                        "payload": json.loads(e.payload),
                        "hash": e.hash,
                    }
                )
            )
        return
    table = Table("seq", "at", "actor", "action", "target")
    for e in events:
        table.add_row(str(e.seq), f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor, e.action, e.target)
    console().print(table)

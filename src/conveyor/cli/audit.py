"""``conveyor audit ...``: verify, checkpoint and read the tamper-evident audit trail."""

from __future__ import annotations

import datetime as dt
import json
import re

import click

from conveyor.cli._common import console, open_from_context
from conveyor.core.errors import CheckFailedError, UsageError

__all__ = ["audit", "parse_since"]

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@click.group()
def audit() -> None:
    """The audit trail: every state change, hash-chained, with signed checkpoints."""


@audit.command()
@click.pass_context
def verify(ctx: click.Context) -> None:
    """Check every link of the chain and the chain against its signed checkpoints.

    Exits 1 naming each edited or missing event, a chain cut short of a checkpoint, and any
    forged checkpoint.
    """
    from conveyor.project import verify_audit

    with open_from_context(ctx) as project:
        report = verify_audit(project)
    out = console()
    if not report.ok:
        for finding in report.findings[1:]:
            # Only these messages do not name their event themselves.
            where = f"event {finding.seq}: " if finding.kind in {"edited", "relinked"} else ""
            out.print(f"  {finding.kind}: {where}{finding.message}")
        first = report.findings[0] if report.findings else None
        what = (
            f"at event {report.broken_seq}: {report.reason}"
            if first is None or first.kind not in {"truncated", "forged"}
            else str(report.reason)
        )
        more = f" (and {len(report.findings) - 1} more, above)" if len(report.findings) > 1 else ""
        raise CheckFailedError(
            f"audit trail broken {what}{more}",
            hint="events from there on cannot be trusted; restore the store from a backup",
            details={
                "events": report.events,
                "broken_seq": report.broken_seq,
                "findings": [
                    {"kind": f.kind, "seq": f.seq, "message": f.message} for f in report.findings
                ],
            },
        )
    cp = report.checkpoint
    last = (
        f"last checkpoint at {cp.at.isoformat(timespec='seconds')} ({cp.seq} events)"
        if cp
        else "no checkpoint yet (`conveyor audit checkpoint` writes one)"
    )
    out.print(f"audit trail intact: {report.events} events, {last}")
    if report.unverified:
        out.print(
            f"note: {report.unverified} checkpoint(s) were signed with another key or could not"
            " be read, and were not checked"
        )


@audit.command()
@click.pass_context
def checkpoint(ctx: click.Context) -> None:
    """Sign the chain's current length and head, in the store and in .conveyor/."""
    from conveyor.project._audit import checkpoint as write_checkpoint

    with open_from_context(ctx) as project:
        cp = write_checkpoint(project)
    console().print(
        f"checkpoint: {cp.seq} events, head {cp.head[:23]}..., at"
        f" {cp.at.isoformat(timespec='seconds')}"
    )


def parse_since(value: str | None, *, now: dt.datetime | None = None) -> dt.datetime | None:
    """An ISO 8601 time (UTC unless it says otherwise) or a span back from now: 30m, 2h, 7d, 1w.

    Raises:
        UsageError: ``value`` is neither.
    """
    if value is None:
        return None
    match = _RELATIVE.match(value)
    if match:
        now = now or dt.datetime.now(dt.UTC)
        return now - dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(
            f"--since {value!r} is not a date or time, nor a span such as 2h",
            hint="use ISO 8601 (2026-11-26T14:00, UTC unless an offset is given)"
            " or a number with s, m, h, d or w (30m, 2h, 7d)",
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@audit.command()
@click.option(
    "--since", default=None, help="Only events at or after this: ISO time (UTC) or 30m, 2h, 7d."
)
@click.option("--action", default=None, help="Only actions starting with this, e.g. model.")
@click.option("--target", default=None, help="Only targets starting with this, e.g. model:churn.")
@click.option("--actor", default=None, help="Only events by this user (exact name).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_context
def log(
    ctx: click.Context,
    since: str | None,
    action: str | None,
    target: str | None,
    actor: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the newest audit events (up to --limit), oldest first."""
    from rich.table import Table

    from conveyor.project import audit_log

    since_at = parse_since(since)
    with open_from_context(ctx) as project:
        events = audit_log(
            project, since=since_at, action=action, target=target, actor=actor, limit=limit
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
                        "prev_hash": e.prev_hash,
                        "hash": e.hash,
                    }
                )
            )
        return
    table = Table("seq", "at", "actor", "action", "target")
    for e in events:
        table.add_row(str(e.seq), f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor, e.action, e.target)
    console().print(table)

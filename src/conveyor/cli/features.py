"""``conveyor features ...``: register feature definitions, materialise them, build training
sets, look values up, and check online against offline.

A FEATURE is written ``name`` (its latest version) or ``name@version`` (a prefix of the digest
is enough); a SERVICE likewise. The online store is ``$CONVEYOR_FEATURES_ONLINE`` (``sqlite``,
the default, or ``redis://host:port/db``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conveyor.cli._common import open_from_context

if TYPE_CHECKING:
    from conveyor.features import FeatureStore
    from conveyor.project import Project

__all__ = ["features"]


def _store(project: Project) -> FeatureStore:
    from conveyor.features import FeatureStore

    settings = project.config.features
    return FeatureStore(
        project.metadata, project.config.root, online=settings.online, offline=settings.offline
    )


def _actor() -> str:
    from conveyor.core.identity import current_user

    return current_user()


@click.group()
def features() -> None:
    """Feature store: list, show, apply, materialize, training-set, get, skew."""


@features.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """Registered feature versions and feature services."""
    from conveyor.features import list_features, list_services
    from conveyor.features._definition import short

    with open_from_context(ctx) as project:
        found = list_features(project.metadata)
        services = list_services(project.metadata)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "features": [_feature_json(f) for f in found],
                    "services": [
                        {"name": n, "version": v, "features": refs} for n, v, refs in services
                    ],
                },
                indent=2,
            )
        )
        return
    for f in found:
        click.echo(f"{f.name}@{short(f.version)}  {f.entity}  {f.dtype}  {f.owner or ''}".rstrip())
    for name, version, refs in services:
        click.echo(f"service {name}@{short(version)}  ({len(refs)} features)")


@features.command()
@click.argument("feature")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def show(ctx: click.Context, feature: str, as_json: bool) -> None:
    """One feature version: entity, dtype, source, owner, TTL."""
    from conveyor.features import get_feature

    with open_from_context(ctx) as project:
        found = get_feature(project.metadata, feature)
    doc = _feature_json(found)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for key, value in doc.items():
        click.echo(f"{key}: {'' if value is None else value}")


@features.command()
@click.argument("definitions", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def apply(ctx: click.Context, definitions: str | None, as_json: bool) -> None:
    """Register the project's definitions (features/*.py, or DEFINITIONS: a .py file or module)
    and compute their offline values from their sources."""
    from conveyor.features import load_definitions

    with open_from_context(ctx) as project:
        loaded = load_definitions(definitions or project.config.root)
        with _store(project) as fs:
            applied = fs.apply(loaded, actor=_actor())
    if as_json:
        click.echo(json.dumps(applied.to_dict(), indent=2))
        return
    for ref in applied.registered:
        click.echo(f"registered {ref}")
    for ref, rows in applied.computed.items():
        click.echo(f"computed {ref}: {rows:,} values")
    if not applied.registered:
        click.echo("no change: every definition was registered already")


@features.command()
@click.argument("services", nargs=-1)
@click.option("--start", type=click.DateTime(), help="First event time (UTC) included.")
@click.option("--end", type=click.DateTime(), help="First event time (UTC) excluded.")
@click.pass_context
def materialize(
    ctx: click.Context,
    services: tuple[str, ...],
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> None:
    """Copy the latest offline values in [--start, --end) of SERVICES (default: every service)
    to the online store; only newer values replace stored ones."""
    from conveyor.features import list_services

    with open_from_context(ctx) as project:
        names = services or tuple(dict.fromkeys(n for n, _, _ in list_services(project.metadata)))
        with _store(project) as fs:
            for name in names:
                done = fs.materialize(name, start=_utc(start), end=_utc(end))
                total = sum(done.entities.values())
                click.echo(f"{name}: {total:,} values for {len(done.entities)} features")


@features.command(name="training-set")
@click.argument("service")
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--timestamp", default="event_timestamp", show_default=True)
@click.option("--timezone", help="Timezone of naive label timestamps, e.g. UTC.")
@click.pass_context
def training_set(
    ctx: click.Context,
    service: str,
    labels: Path,
    out: Path,
    timestamp: str,
    timezone: str | None,
) -> None:
    """Point-in-time correct features for each row of LABELS (Parquet/CSV), written to --out."""
    from conveyor.core.atomic import atomic_write_bytes
    from conveyor.data.reading import read_dataset
    from conveyor.packaging import encode_frame

    with open_from_context(ctx) as project, _store(project) as fs:
        frame = fs.training_set(
            service, read_dataset(labels), timestamp=timestamp, timezone=timezone
        )
    atomic_write_bytes(out, encode_frame(frame, what="the training set"))
    click.echo(f"wrote {len(frame):,} rows to {out}")


@features.command()
@click.argument("service")
@click.argument("entities", nargs=-1, required=True)
@click.option("--feature", "only", multiple=True, help="Only this feature (repeatable).")
@click.pass_context
def get(ctx: click.Context, service: str, entities: tuple[str, ...], only: tuple[str, ...]) -> None:
    """The online values of SERVICE's features for ENTITIES, as JSON."""
    with open_from_context(ctx) as project, _store(project) as fs:
        found = fs.get_online_features(service, list(entities), features=list(only) or None)
    click.echo(json.dumps(found, indent=2, default=str))


@features.command()
@click.argument("service")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def skew(ctx: click.Context, service: str, as_json: bool) -> None:
    """Compare SERVICE's online values with the latest offline ones; exit 1 on a difference."""
    from conveyor.core.errors import CheckFailedError

    with open_from_context(ctx) as project, _store(project) as fs:
        found = fs.skew(service)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in found], indent=2))
    else:
        for s in found:
            click.echo(f"{s.feature}: {s.mismatches:,} of {s.rows:,} differ ({s.share:.2%})")
    bad = [s.feature for s in found if s.mismatches]
    if bad:
        raise CheckFailedError(
            f"feature service '{service}': online values differ from offline for {', '.join(bad)}",
            hint=f"re-run `conveyor features materialize {service}`",
        )


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.replace(tzinfo=dt.UTC)


def _feature_json(f: Any) -> dict[str, Any]:
    return {
        "name": f.name,
        "version": f.version,
        "entity": f.entity,
        "dtype": f.dtype,
        "timestamp": f.timestamp,
        "ttl_seconds": f.ttl_seconds,
        "source": f.source,
        "owner": f.owner,
        "description": f.description,
        "created_at": None if f.created_at is None else f.created_at.isoformat(),
    }

"""``conveyor lineage ...`` and ``conveyor changelog``: where things came from, what they went
into, what was in production when, what changed between versions.

A NODE is written ``kind:ref`` (``model:churn/3``, ``dataset:blake3:...``, ``run:<id>``,
``artifact:blake3:...``, ``evaluation:12``), or ``MODEL/VERSION`` for a model version, or the
path of a data file (its content digest names the dataset).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from conveyor.cli._common import open_from_context

__all__ = ["changelog", "lineage"]

_FORMATS = ("table", "json", "dot", "mermaid")


def _target(text: str) -> str:
    from conveyor.lineage.graph import parse_target

    path = Path(text)
    if ":" not in text and path.is_file():
        from conveyor.core.digest import digest_file

        return f"dataset:{digest_file(path)}"
    return parse_target(text)


@click.group()
def lineage() -> None:
    """Query the lineage graph: upstream, downstream, models-using, evaluated-on, at, diff."""


def _walk_command(direction: str) -> click.Command:
    @click.command(name=direction)
    @click.argument("node")
    @click.option("--depth", type=click.IntRange(min=1), help="At most this many steps away.")
    @click.option(
        "--format", "fmt", type=click.Choice(_FORMATS), default="table", show_default=True
    )
    @click.pass_context
    def command(ctx: click.Context, node: str, depth: int | None, fmt: str) -> None:
        from conveyor.lineage.graph import downstream, upstream
        from conveyor.lineage.render import render

        walk = upstream if direction == "upstream" else downstream
        start = _target(node)
        with open_from_context(ctx) as project:
            graph = walk(project.metadata, start, depth=depth)
        click.echo(render(graph, fmt))

    command.help = (
        f"Everything {'NODE was made from' if direction == 'upstream' else 'made from NODE'}, "
        "to any depth (or --depth), as a table, JSON, DOT or Mermaid."
    )
    return command


lineage.add_command(_walk_command("upstream"))
lineage.add_command(_walk_command("downstream"))


@lineage.command(name="models-using")
@click.argument("node")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def models_using(ctx: click.Context, node: str, as_json: bool) -> None:
    """The model versions NODE (a dataset, data file, feature, artifact) went into: at training
    (through runs) and at evaluation."""
    from conveyor.lineage.graph import models_using as query

    start = _target(node)
    with open_from_context(ctx) as project:
        found = query(project.metadata, start)
    if as_json:
        click.echo(json.dumps({"node": start, **found}, indent=2))
        return
    for when in ("training", "evaluation"):
        versions = ", ".join(v.removeprefix("model:") for v in found[when]) or "none"
        click.echo(f"at {when}: {versions}")


@lineage.command(name="evaluated-on")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def evaluated_on(ctx: click.Context, name: str, version: int, as_json: bool) -> None:
    """The dataset versions VERSION of model NAME was evaluated on."""
    from conveyor.lineage.graph import evaluated_on as query

    with open_from_context(ctx) as project:
        found = query(project.metadata, name, version)
    if as_json:
        click.echo(json.dumps([n.to_json() for n in found], indent=2))
        return
    if not found:
        click.echo(f"{name} v{version} has not been evaluated")
    for n in found:
        click.echo(f"{n.id}  {n.label}  ({n.details['evaluation']}, {n.details['evaluated_at']})")


@lineage.command(name="at")
@click.argument("when")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def at(ctx: click.Context, when: str, name: str | None, as_json: bool) -> None:
    """What was in production at WHEN (ISO 8601, e.g. 2026-03-01T14:00Z; UTC if no offset),
    for every model or model NAME."""
    from conveyor.lineage.graph import in_production_at

    moment = _moment(when)
    with open_from_context(ctx) as project:
        found = in_production_at(project.metadata, moment, model=name)
    if as_json:
        click.echo(json.dumps({"at": moment.isoformat(), "production": found}, indent=2))
        return
    if not found:
        click.echo(f"no model was registered at {moment.isoformat()}")
    for model, version in found.items():
        shown = f"v{version}" if version is not None else "nothing in production"
        click.echo(f"{model}: {shown} at {moment.isoformat()}")


def _moment(text: str) -> Any:
    import datetime as dt

    from conveyor.core.errors import UsageError

    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is not a date and time",
            hint="write ISO 8601, e.g. 2026-03-01T14:00:00Z or 2026-03-01 14:00+01:00",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


@lineage.command()
@click.argument("name")
@click.argument("old", type=int)
@click.argument("new", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def diff(ctx: click.Context, name: str, old: int, new: int, as_json: bool) -> None:
    """What changed from version OLD to NEW of model NAME: data, code, parameters, environment,
    metrics."""
    from conveyor.lineage.graph import diff_versions

    with open_from_context(ctx) as project:
        found = diff_versions(project.metadata, name, old, new)
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2))
        return
    _print_diff(found.to_json(), unchanged=found.unchanged)


def _print_diff(body: dict[str, Any], *, unchanged: bool) -> None:
    click.echo(f"{body['model']} v{body['old']} -> v{body['new']}")
    if unchanged:
        click.echo("  nothing changed: same data, code, parameters, environment and metrics")
        return
    for added in body["data"]["added"]:
        click.echo(f"  data +  {added}")
    for removed in body["data"]["removed"]:
        click.echo(f"  data -  {removed}")
    for step, change in body["code"].items():
        click.echo(f"  code    step {step}: {change['old']} -> {change['new']}")
    for key, change in body["params"].items():
        click.echo(f"  param   {key}: {change['old']!r} -> {change['new']!r}")
    env = body["environment"]
    if env["old"] != env["new"]:
        click.echo(f"  env     {', '.join(env['old'])} -> {', '.join(env['new'])}")
    for key, change in body["metrics"].items():
        delta = change["delta"]
        shown = f" ({delta:+.4g})" if delta is not None else ""
        click.echo(f"  metric  {key}: {change['old']} -> {change['new']}{shown}")


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON instead of markdown.")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write to this file."
)
@click.pass_context
def changelog(ctx: click.Context, name: str, as_json: bool, output: str | None) -> None:
    """Model NAME's history, newest version first, generated from the metadata store: data,
    parameter and metric changes, gates, reviews, promotions and rollbacks."""
    from conveyor.lineage.changelog import changelog as build
    from conveyor.lineage.changelog import render_markdown

    with open_from_context(ctx) as project:
        entries = build(project.metadata, name)
    text = (
        json.dumps({"model": name, "versions": [e.to_json() for e in entries]}, indent=2)
        if as_json
        else render_markdown(name, entries)
    )
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    from conveyor.core.atomic import atomic_write_bytes

    atomic_write_bytes(Path(output), text.encode())
    click.echo(f"wrote {output}")

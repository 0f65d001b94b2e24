"""``conveyor model ...``, ``conveyor promote`` and ``conveyor rollback``: the registry's face."""

from __future__ import annotations

import json
from typing import Any

import click

from conveyor.cli._common import console, open_from_context
from conveyor.core.identity import current_user

__all__ = ["model", "promote", "rollback"]

_STAGES = ("experimental", "candidate", "production", "archived")


@click.group()
def model() -> None:
    """Registered models, their versions and stages."""


@model.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """List models, or the versions of model NAME."""
    from rich.table import Table

    from conveyor.registry import list_models, list_versions

    with open_from_context(ctx) as project:
        if name is None:
            models = list_models(project.metadata)
            if as_json:
                click.echo(json.dumps([m.to_dict() for m in models], indent=2, default=str))
                return
            table = Table("model", "versions", "latest", "production")
            for m in models:
                prod = "-" if m.production_version is None else str(m.production_version)
                table.add_row(m.name, str(m.versions), str(m.latest_version), prod)
            console().print(table if models else "no models yet; `conveyor run` registers one")
            return
        versions = list_versions(project.metadata, name)
    if as_json:
        click.echo(json.dumps([v.to_dict() for v in versions], indent=2, default=str))
        return
    table = Table("version", "stage", "created", "by", "metrics", "bundle")
    for v in versions:
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items())[:4])
        table.add_row(
            str(v.version),
            v.stage,
            f"{v.created_at:%Y-%m-%d %H:%M}",
            v.created_by,
            metrics,
            v.artifact_digest[:19],
        )
    console().print(table)


@model.command("show")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_context
def show(ctx: click.Context, name: str, version: int, as_json: bool) -> None:
    """Show VERSION of model NAME: stage, metrics, signature and bundle. Loads the bundle and
    verifies every file's digest (exit 3 if one does not match)."""
    from conveyor.packaging import load_bundle
    from conveyor.registry import get_version

    with open_from_context(ctx) as project:
        mv = get_version(project.metadata, name, version)
        loaded = load_bundle(project.artifacts, mv.artifact_digest)
    manifest = loaded.manifest
    if as_json:
        click.echo(
            json.dumps(
                {"version": mv.to_dict(), "manifest": manifest.to_dict()}, indent=2, default=str
            )
        )
        return
    out = console()
    out.print(
        f"[bold]{name}[/bold] v{version}  stage [bold]{mv.stage}[/bold]  "
        f"by {mv.created_by} at {mv.created_at:%Y-%m-%d %H:%M:%S}"
    )
    out.print(f"bundle {mv.artifact_digest} (every file verified)")
    out.print("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(mv.metrics.items())))
    out.print("inputs:  " + ", ".join(f"{c.name}:{c.datatype}" for c in manifest.signature.inputs))
    out.print("outputs: " + ", ".join(f"{c.name}:{c.datatype}" for c in manifest.signature.outputs))
    out.print(
        f"env: python {manifest.env.python} on {manifest.env.platform}; "
        + ", ".join(f"{k}=={v}" for k, v in sorted(manifest.env.requirements.items()))
    )


@model.command("history")
@click.argument("name")
@click.pass_context
def history(ctx: click.Context, name: str) -> None:
    """Every stage change of model NAME, oldest first."""
    from rich.table import Table

    from conveyor.registry import stage_history

    with open_from_context(ctx) as project:
        changes = stage_history(project.metadata, name)
    table = Table("at", "version", "stage", "actor", "reason")
    for c in changes:
        table.add_row(f"{c.at:%Y-%m-%d %H:%M:%S}", str(c.version), c.stage, c.actor, c.reason)
    console().print(table)


def render_checks(checks: list[dict[str, Any]], *, stderr: bool = False) -> None:
    """Print gate results (``CheckResult.to_dict()``) as a table: check, observed, threshold."""
    from rich.table import Table

    table = Table("stage", "check", "observed", "threshold", "result", "detail")
    for c in checks:
        observed = "-" if c.get("observed") is None else f"{c['observed']:.4f}"
        threshold = "-" if c.get("threshold") is None else f"{c['threshold']:.4f}"
        verdict = "[green]pass[/green]" if c["passed"] else "[red]FAIL[/red]"
        table.add_row(c.get("stage", ""), c["check"], observed, threshold, verdict, c["detail"])
    console(stderr=stderr).print(table)


@click.command()
@click.argument("name")
@click.argument("version", type=int)
@click.option("--to", "to", required=True, type=click.Choice(_STAGES), help="Target stage.")
@click.option("--reason", default="", help="Why; recorded in the stage history and audit trail.")
@click.option("--json", "as_json", is_flag=True, help="Print the gate results as JSON.")
@click.pass_context
def promote(
    ctx: click.Context, name: str, version: int, to: str, reason: str, as_json: bool
) -> None:
    """Promote VERSION of model NAME to a stage, if it passes that stage's gates.

    Exit code 1 when a gate fails; nothing moves in that case."""
    from conveyor.core.errors import CheckFailedError
    from conveyor.project import promote as promote_version

    with open_from_context(ctx) as project:
        try:
            result = promote_version(
                project, model=name, version=version, to=to, actor=current_user(), reason=reason
            )
        except CheckFailedError as exc:
            # The table goes to stderr with the error line; stdout stays machine-readable.
            if as_json:
                click.echo(json.dumps(exc.details, indent=2, default=str))
            else:
                render_checks(exc.details.get("checks", []), stderr=True)
            raise
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    if result.checks:
        render_checks([c.to_dict() for c in result.checks])
    for note in result.notes:
        console().print(f"note: {note}")
    replaced = f" (v{result.replaced_version} archived)" if result.replaced_version else ""
    console().print(
        f"model [bold]{name}[/bold] version [bold]{version}[/bold]: "
        f"{result.from_stage} -> [bold green]{result.to_stage}[/bold green]{replaced}"
    )


@click.command()
@click.argument("name")
@click.option("--reason", default="", help="Why; recorded in the stage history and audit trail.")
@click.pass_context
def rollback(ctx: click.Context, name: str, reason: str) -> None:
    """Put the previous production version of model NAME back into production, at once."""
    from conveyor.project import rollback as rollback_model

    with open_from_context(ctx) as project:
        result = rollback_model(project, model=name, actor=current_user(), reason=reason)
    console().print(
        f"model [bold]{name}[/bold]: production rolled back from version {result.from_version} "
        f"to version [bold]{result.to_version}[/bold]"
    )

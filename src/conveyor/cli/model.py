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
    """Show VERSION of model NAME: stage, metrics, signature and bundle, its latest evaluation,
    the latest result of each gate check and its reviews. Loads the bundle and verifies every
    file's digest (exit 3 if one does not match). `conveyor model report` has the full story."""
    from conveyor.packaging import load_bundle
    from conveyor.project import gate_report

    with open_from_context(ctx) as project:
        gathered = gate_report(project, name, version)
        mv = gathered.version
        loaded = load_bundle(project.artifacts, mv.artifact_digest)
    manifest = loaded.manifest
    evaluation = gathered.latest_evaluation
    gates = gathered.latest_results()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "version": mv.to_dict(),
                    "manifest": manifest.to_dict(),
                    "evaluation": None if evaluation is None else evaluation.to_dict(),
                    "gates": [g.to_dict() for g in gates],
                    "reviews": [r.to_dict() for r in gathered.reviews],
                },
                indent=2,
                default=str,
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
    if evaluation is not None:
        headline = ", ".join(
            f"{k}={v:.4g}" for k, v in sorted(evaluation.metrics.items()) if v is not None
        )
        out.print(
            f"evaluation {evaluation.id} on dataset version {evaluation.dataset_version}: "
            + headline,
            markup=False,
        )
    for g in gates:
        observed = "-" if g.observed is None else f"{g.observed:.4g}"
        threshold = "-" if g.threshold is None else f"{g.threshold:.4g}"
        verdict = "pass" if g.passed else "FAIL"
        out.print(
            f"gate {g.stage}: {verdict} {g.check}: observed {observed}, threshold {threshold}; "
            f"{g.detail}",
            markup=False,
        )
    for r in gathered.reviews:
        role = f" ({r.role})" if r.role else ""
        comment = f": {r.comment}" if r.comment else ""
        out.print(
            f"review {r.stage}: {r.decision} by {r.user}{role} at {r.at:%Y-%m-%d %H:%M:%S}"
            + comment,
            markup=False,
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

    # Into or out of production is a deployer's act; to candidate, a scientist's.
    permission = "deploy" if to in ("production", "archived") else None
    with open_from_context(ctx, permission=permission) as project:
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


# `model report` lives in its own module (one command, one concern); registered here so that it
# is a subcommand of `model` without the entry point knowing about it.
from conveyor.cli.report import report as _report  # noqa: E402

model.add_command(_report)

"""``conveyor run``: run the pipeline, skipping cached steps, and register the model."""

from __future__ import annotations

import json

import click

from conveyor.cli._common import console, open_from_context
from conveyor.core.identity import current_user

__all__ = ["run"]

_STYLE = {"ran": "green", "cached": "cyan", "failed": "red"}


def _unchanged(ctx: click.Context) -> bool:
    """Answer from the run lock when nothing changed, before any heavy import; else False."""
    from pathlib import Path

    from conveyor.project import unchanged_run

    obj = ctx.find_root().obj or {}
    project_dir = obj.get("project_dir")
    locked = unchanged_run(Path(project_dir) if project_dir else None, obj.get("overrides") or {})
    if locked is None:
        return False
    n = len(locked.steps)
    click.echo(
        f"pipeline {locked.pipeline}: {n} steps: 0 ran, {n} cached "
        "(nothing changed since the last run, by the run lock)"
    )
    if locked.model is not None:
        click.echo(
            f"model {locked.model} unchanged, already registered as version {locked.version}"
        )
    return True


@click.command()
@click.option("--force", is_flag=True, help="Re-run every step even if its cache key matches.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def run(ctx: click.Context, force: bool, as_json: bool) -> None:
    """Run the project's pipeline; a step whose inputs, code, params and env are unchanged is
    skipped. If conveyor.yaml has a `model:` section, the model is packaged and registered.

    When nothing at all changed since the last run (checked by file fingerprints in
    .conveyor/run-lock.json), it says so without loading anything; --force re-runs every step."""
    if not force and not as_json and _unchanged(ctx):
        return
    from conveyor.project import run as run_project

    out = console()

    def on_event(event: object) -> None:
        if as_json:
            return
        name = getattr(event, "name", "?")
        status = getattr(event, "status", "?")
        duration = getattr(event, "duration_s", 0.0)
        style = _STYLE.get(status, "white")
        out.print(f"  [{style}]{status:>7}[/{style}]  {name:<24} {duration * 1000:8.1f} ms")

    with open_from_context(ctx) as project:
        if not as_json:
            out.print(f"[bold]pipeline[/bold] {project.config.pipeline}  ({project.config.root})")
        report = run_project(project, actor=current_user(), force=force, on_event=on_event)
    steps = report.pipeline.steps
    cached = sum(1 for s in steps if s.status == "cached")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "pipeline_run_id": report.pipeline.pipeline_run_id,
                    "steps": [
                        {
                            "name": s.name,
                            "status": s.status,
                            "duration_s": s.duration_s,
                            "cache_key": s.cache_key,
                            "output_digest": s.output_digest,
                        }
                        for s in steps
                    ],
                    "model": None
                    if report.version is None
                    else {
                        "name": report.version.model,
                        "version": report.version.version,
                        "created": report.created,
                        "artifact_digest": report.version.artifact_digest,
                    },
                },
                indent=2,
            )
        )
        return
    summary = f"{len(steps)} steps: {len(steps) - cached} ran, {cached} cached"
    out.print(f"[bold]{summary}[/bold]" + ("  (nothing changed)" if cached == len(steps) else ""))
    if report.version is not None:
        v = report.version
        verb = "registered" if report.created else "unchanged, already registered as"
        out.print(
            f"model [bold]{v.model}[/bold] {verb} version [bold]{v.version}[/bold] ({v.stage})"
        )

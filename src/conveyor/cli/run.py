"""``conveyor run``: run the pipeline, skipping cached steps, and register the model."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from conveyor.project import LockedRun, RunLock, RunReport

__all__ = ["run"]

_STYLE = {"ran": "green", "cached": "cyan", "failed": "red"}


@click.command()
@click.option("--force", is_flag=True, help="Re-run every step even if its cache key matches.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--executor",
    metavar="WHERE",
    default=None,
    help="Where steps run: local (this process, the default), processes (a local pool), "
    "dask (a Dask cluster on this machine, for the run) or dask://HOST:PORT (a running "
    "Dask scheduler). Steps that do not depend on each other run at the same time.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="How many steps run at once: processes of a local pool (alone or with --executor "
    "processes), or worker processes of --executor dask.",
)
@click.pass_context
def run(
    ctx: click.Context, force: bool, as_json: bool, executor: str | None, jobs: int | None
) -> None:
    """Run the project's pipeline; a step whose inputs, code, params and env are unchanged is
    skipped. If conveyor.yaml has a `model:` section, the model is packaged and registered.

    When nothing at all changed since the last run (file fingerprints in
    .conveyor/run-lock.json), it answers from there without loading the stores, and records
    no run: a no-op is not a state change. --force re-runs every step.

    Cache keys, outputs and records are the same wherever the steps run; with Dask, the
    artifact store must be one the workers reach too (see docs/dask.md)."""
    from pathlib import Path

    from conveyor.project import run_lock

    obj = ctx.find_root().obj or {}
    project_dir = obj.get("project_dir")
    # Fingerprints first, before anything is read: an edit during the run shows next time.
    lock = run_lock(Path(project_dir) if project_dir else None, obj.get("overrides") or {})
    locked = None if force else lock.unchanged()
    if locked is not None:
        _print_unchanged(locked, as_json=as_json)
    else:
        _run_full(ctx, lock, force=force, as_json=as_json, executor=executor, jobs=jobs)


def _print_unchanged(locked: LockedRun, *, as_json: bool) -> None:
    """What a full run of an unchanged project prints, without its per-step progress lines."""
    if as_json:
        steps = [
            {
                "name": s.name,
                "status": "cached",
                "duration_s": 0.0,
                "cache_key": s.cache_key,
                "output_digest": s.output_digest,
            }
            for s in locked.steps
        ]
        m = locked.model
        model = None
        if m is not None:
            model = {
                "name": m.name,
                "version": m.version,
                "created": False,
                "artifact_digest": m.artifact_digest,
                "stage": m.stage,
            }
        _echo_json(locked.pipeline_run_id, steps, model, fast_path=True)
        return
    n = len(locked.steps)
    click.echo(f"pipeline {locked.ref}  ({locked.root})")
    click.echo(f"{n} steps: 0 ran, {n} cached  (nothing changed)")
    if locked.model is not None:
        m = locked.model
        click.echo(
            f"model {m.name} unchanged, already registered as version {m.version} ({m.stage})"
        )


def _run_full(
    ctx: click.Context,
    lock: RunLock,
    *,
    force: bool,
    as_json: bool,
    executor: str | None,
    jobs: int | None,
) -> None:
    from conveyor.cli._common import console, open_from_context
    from conveyor.core.identity import current_user
    from conveyor.pipeline import executor_for, using_executor
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

    # The executor first: an unreachable scheduler fails the command before anything is opened.
    with (
        executor_for(executor, jobs=jobs) as where,
        using_executor(where),
        open_from_context(ctx) as project,
    ):
        if not as_json:
            out.print(f"[bold]pipeline[/bold] {project.config.pipeline}  ({project.config.root})")
        report = run_project(
            project, actor=current_user(), force=force, on_event=on_event, lock=lock
        )
    steps = report.pipeline.steps
    if as_json:
        _echo_json(
            report.pipeline.pipeline_run_id,
            [
                {
                    "name": s.name,
                    "status": s.status,
                    "duration_s": s.duration_s,
                    "cache_key": s.cache_key,
                    "output_digest": s.output_digest,
                }
                for s in steps
            ],
            _model_json(report),
            fast_path=False,
        )
        return
    cached = sum(1 for s in steps if s.status == "cached")
    summary = f"{len(steps)} steps: {len(steps) - cached} ran, {cached} cached"
    out.print(f"[bold]{summary}[/bold]" + ("  (nothing changed)" if cached == len(steps) else ""))
    if report.version is not None:
        v = report.version
        verb = "registered" if report.created else "unchanged, already registered as"
        out.print(
            f"model [bold]{v.model}[/bold] {verb} version [bold]{v.version}[/bold] ({v.stage})"
        )


def _model_json(report: RunReport) -> dict[str, Any] | None:
    v = report.version
    if v is None:
        return None
    return {
        "name": v.model,
        "version": v.version,
        "created": report.created,
        "artifact_digest": v.artifact_digest,
        "stage": v.stage,
    }


def _echo_json(
    pipeline_run_id: str,
    steps: list[dict[str, Any]],
    model: dict[str, Any] | None,
    *,
    fast_path: bool,
) -> None:
    # fast_path: true when the answer came from the run lock; then no run was recorded and
    # pipeline_run_id is the run the lock vouches for.
    body = {
        "pipeline_run_id": pipeline_run_id,
        "fast_path": fast_path,
        "steps": steps,
        "model": model,
    }
    click.echo(json.dumps(body, indent=2))

"""``conveyor reproduce MODEL VERSION``: rebuild a version from its records and compare."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from conveyor.cli._common import console, open_from_context
from conveyor.core.errors import ExitCode
from conveyor.core.identity import current_user

if TYPE_CHECKING:
    from conveyor.project._reproduce import ReproduceReport

__all__ = ["reproduce"]

_VERDICT_STYLE = {"bit-identical": "green", "within tolerance": "yellow", "not reproduced": "red"}


@click.command()
@click.argument("name")
@click.argument("version", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--keep", is_flag=True, help="Keep the rebuild folder and print its path.")
@click.pass_context
def reproduce(ctx: click.Context, name: str, version: int, as_json: bool, keep: bool) -> None:
    """Rebuild VERSION of model NAME from its recorded code, data, params and seed.

    The recorded code snapshot runs in a clean temporary folder against scratch stores, on the
    data files the run read (checked against their recorded digests). Exit 0 when the rebuilt
    bundle is bit-identical or its metrics are within the tolerances of policies.yaml
    (`reproducible: {rebuild: true, tolerance: ...}`), else 1, naming what differed:
    environment, data, code, or nondeterminism."""
    from conveyor.project._reproduce import reproduce as reproduce_version

    with open_from_context(ctx) as project:
        report = reproduce_version(
            project, model=name, version=version, actor=current_user(), keep=keep
        )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print(report)
    if not report.reproduced:
        ctx.exit(int(ExitCode.CHECK_FAILED))


def _print(report: ReproduceReport) -> None:
    from rich.table import Table

    out = console()
    style = _VERDICT_STYLE.get(report.verdict, "bold")
    out.print(
        f"model [bold]{report.model}[/bold] v{report.version}: [{style}]{report.verdict}[/{style}]"
    )
    git = "not a git repository" if report.git_commit is None else report.git_commit[:12]
    if report.git_dirty:
        git += " (uncommitted changes)"
    out.print(
        f"pipeline run {report.pipeline_run_id}, seed {report.seed}, git {git}\n"
        f"registered {report.registered_digest}\n"
        f"rebuilt    {report.rebuilt_digest or '-'}"
    )
    steps = Table("step", "code", "output")
    for s in report.steps:
        code = "-" if s.rebuilt_code is None else "changed" if s.code_changed else "same"
        output = "-" if s.rebuilt_output is None else "differs" if s.output_changed else "same"
        steps.add_row(s.step, code, output)
    out.print(steps)
    if report.metrics and not report.identical:
        metrics = Table("metric", "registered", "rebuilt", "difference", "tolerance", "ok")
        for m in report.metrics:
            metrics.add_row(
                m.metric,
                f"{m.registered:.6g}",
                "-" if m.rebuilt is None else f"{m.rebuilt:.6g}",
                "-" if m.difference is None else f"{m.difference:.3g}",
                f"{m.tolerance:g}",
                "yes" if m.within else "no",
            )
        out.print(metrics)
    for cause in report.causes:
        out.print(f"- {cause}")
    if report.environment and report.identical:
        out.print("note: the environment differs from the recorded one, without effect here")
    if report.workdir is not None:
        out.print(f"rebuild folder kept: {report.workdir}")

"""``conveyor ci``: the CI entry point: pipeline, data checks and gates, with reports for CI."""

from __future__ import annotations

import click

__all__ = ["ci"]

_STAGES = ("candidate", "production")


@click.command()
@click.option(
    "--stage",
    type=click.Choice(_STAGES),
    default="candidate",
    show_default=True,
    help="The stage whose gates the new version must pass.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=str),
    default="ci-report",
    show_default=True,
    help="Folder for report.md, report.json, junit.xml, metrics.txt and comment.md "
    "(relative to the project folder).",
)
@click.option("--promote", is_flag=True, help="Promote the version when every check passes.")
@click.option(
    "--cache-key", "key_only", is_flag=True, help="Print only the CI cache key, and exit."
)
@click.pass_context
def ci(ctx: click.Context, stage: str, out: str, promote: bool, key_only: bool) -> None:
    """Run the pipeline, the data checks and the gates of --stage on the version it registers,
    without promoting it (unless --promote), and write the reports CI shows.

    Exit code 0 when every step and check passed, 1 when one failed, 2 on a usage or
    configuration error. When $GITHUB_STEP_SUMMARY is set, report.md is appended to it."""
    import os
    from pathlib import Path

    from conveyor.core.config import load_config
    from conveyor.core.errors import CheckFailedError

    obj = ctx.find_root().obj or {}
    project_dir = obj.get("project_dir")
    if key_only:
        from conveyor.project._ci import cache_key

        config = load_config(Path(project_dir) if project_dir else None, obj.get("overrides"))
        click.echo(cache_key(config))
        return

    from conveyor.cli._common import open_from_context
    from conveyor.core.identity import current_user
    from conveyor.project import run_lock
    from conveyor.project._ci import run_ci
    from conveyor.project._ci_report import GITHUB_STEP_SUMMARY, write_reports

    lock = run_lock(Path(project_dir) if project_dir else None, obj.get("overrides") or {})
    with open_from_context(ctx) as project:
        root = project.config.root
        result = run_ci(project, stage=stage, actor=current_user(), promote=promote, lock=lock)
    summary = os.environ.get(GITHUB_STEP_SUMMARY)
    folder = Path(out) if Path(out).is_absolute() else root / out
    write_reports(result, folder, step_summary=Path(summary) if summary else None)
    click.echo(f"cache key: {result.cache_key}")
    for s in result.steps:
        click.echo(f"  {s.status:>7}  {s.name}")
    for c in result.checks:
        verdict = "pass" if c.passed else "FAIL"
        click.echo(f"  {verdict:>7}  {c.check}: {c.detail}")
    for check, reason in result.skipped:
        click.echo(f"  {'skip':>7}  {check}: {reason}")
    if result.model is not None:
        moved = ", promoted" if result.promoted else ""
        click.echo(f"model {result.model} version {result.version} ({result.version_stage}{moved})")
    click.echo(f"reports in {folder}")
    if not result.passed:
        raise CheckFailedError(
            f"conveyor ci: {len(result.failed)} of {len(result.steps) + len(result.checks)} "
            f"steps and checks failed for {stage}: {', '.join(result.failed)}",
            hint=f"see {folder / 'report.md'}; nothing was promoted",
            details=result.to_dict(),
        )

"""``conveyor package MODEL VERSION --dockerfile``: a reproducible image definition for serving."""

from __future__ import annotations

import click

__all__ = ["package"]


@click.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option(
    "--dockerfile",
    is_flag=True,
    required=True,
    help="Write a Dockerfile and the bundle files (the only output format so far).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Build context folder (default: ./package/NAME-VERSION).",
)
@click.option(
    "--base-image",
    default=None,
    help="Base image, pinned (e.g. python@sha256:...); default python:<bundle's Python>-slim.",
)
@click.pass_context
def package(
    ctx: click.Context,
    name: str,
    version: int,
    dockerfile: bool,
    out: str | None,
    base_image: str | None,
) -> None:
    """Write a Dockerfile that serves VERSION of model NAME, with the bundle beside it: pinned
    base image, the bundle's locked requirements, a non-root user, a health check on
    /v2/health/ready and `conveyor serve` as the entry point. Same version, same bytes."""
    from pathlib import Path

    from conveyor.cli._common import open_from_context
    from conveyor.core.errors import UsageError
    from conveyor.project._dockerfile import write_docker_context

    if not dockerfile:
        raise UsageError("nothing to write", hint="pass --dockerfile")
    folder = Path(out) if out else Path("package") / f"{name}-{version}"
    with open_from_context(ctx) as project:
        written = write_docker_context(project, name, version, folder, base_image=base_image)
    click.echo(f"wrote {len(written.files)} files to {written.folder} (FROM {written.base_image})")
    click.echo(f"build: docker build -t {name}:{version} {written.folder}")

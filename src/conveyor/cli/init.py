"""``conveyor init``: scaffold a new project laid out for delivery."""

from __future__ import annotations

import click

__all__ = ["init"]


@click.command()
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=str),
    default=None,
    help="Folder to create the project in (default: ./NAME); must be new or empty.",
)
def init(name: str, directory: str | None) -> None:
    """Create project NAME: a training pipeline on a small bundled data set, policies its first
    version passes, tests, inference example, and CI workflows for GitHub and GitLab that run
    `conveyor ci` on pull requests and promote on merge to main."""
    from pathlib import Path

    from conveyor.project._scaffold import init_project

    target = Path(directory) if directory else Path(name)
    scaffold = init_project(name, target)
    click.echo(f"created project {name} in {scaffold.root} ({len(scaffold.files)} files)")
    click.echo(f"next: cd {scaffold.root} && conveyor ci --stage candidate")

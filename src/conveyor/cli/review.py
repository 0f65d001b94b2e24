"""``conveyor approve`` / ``conveyor reject``: a person's review of a version for a stage."""

from __future__ import annotations

import json

import click

from conveyor.cli._common import console, open_from_context
from conveyor.core.identity import current_user

__all__ = ["approve", "reject"]

_GATED = ("candidate", "production")


def _review_command(decision: str) -> click.Command:
    verb = "Approve" if decision == "approve" else "Reject"

    @click.command(name=decision)
    @click.argument("name")
    @click.argument("version", type=int)
    @click.option(
        "--stage",
        required=True,
        type=click.Choice(_GATED),
        help="The stage the version is waiting to enter.",
    )
    @click.option("--comment", default="", help="Why; shown with the review and audited.")
    @click.option("--json", "as_json", is_flag=True, help="Print the review as JSON.")
    @click.pass_context
    def command(
        ctx: click.Context, name: str, version: int, stage: str, comment: str, as_json: bool
    ) -> None:
        from conveyor.project import review

        with open_from_context(ctx) as project:
            result = review(
                project,
                model=name,
                version=version,
                stage=stage,
                decision=decision,
                actor=current_user(),
                comment=comment,
            )
        if as_json:
            click.echo(json.dumps(result.to_dict(), indent=2))
            return
        done = "approved" if decision == "approve" else "rejected"
        role = f" (role {result.role})" if result.role else ""
        console().print(
            f"model [bold]{name}[/bold] version [bold]{version}[/bold] {done} for {stage} by "
            f"{result.user}{role}"
            + (f": {comment}" if comment else "")
            + (
                f"; run `conveyor promote {name} {version} --to {stage}` to move it"
                if decision == "approve"
                else ""
            )
        )

    command.help = (
        f"{verb} VERSION of model NAME for a stage. The version's author cannot review it "
        "(four-eyes rule); when the stage's policy names `approvals.roles`, the reviewer must "
        "have one of them."
    )
    return command


approve = _review_command("approve")
reject = _review_command("reject")

"""``conveyor auth``: the first admin, users and their roles, API tokens."""

from __future__ import annotations

import json

import click

from conveyor.cli._common import console, open_from_context
from conveyor.core.identity import current_user

__all__ = ["auth"]


@click.group()
def auth() -> None:
    """Access control: `init` names the first admin; then users, roles and API tokens."""


@auth.command()
@click.option("--admin", "admin", required=True, help="The user who becomes the first admin.")
@click.pass_context
def init(ctx: click.Context, admin: str) -> None:
    """Turn access control on, with ADMIN as the first admin (refused once done). There are
    no default credentials: until this runs, the HTTP management API refuses every request."""
    from conveyor.access import bootstrap_admin

    with open_from_context(ctx) as project:
        bootstrap_admin(project.metadata, admin, actor=current_user())
    console().print(
        f"access control is on; {admin} is admin. Next: `conveyor auth user add NAME --role "
        "ROLE` and `conveyor auth token create NAME` for the HTTP API"
    )


@auth.group()
def user() -> None:
    """Users and their roles."""


@user.command("add")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["viewer", "scientist", "approver", "deployer", "admin"]),
    help="viewer, scientist (run, register), approver (review), deployer (deploy, rollback), "
    "admin (users, tokens).",
)
@click.pass_context
def user_add(ctx: click.Context, name: str, role: str) -> None:
    """Add user NAME with a role, or change their role."""
    from conveyor.access import add_user

    with open_from_context(ctx) as project:
        add_user(project.metadata, name, role, actor=current_user())
    console().print(f"{name}: {role}")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def user_list(ctx: click.Context, as_json: bool) -> None:
    """Users and their roles."""
    from conveyor.access import list_users

    with open_from_context(ctx) as project:
        users = list_users(project.metadata)
    if as_json:
        click.echo(json.dumps([{"user": u.user, "role": u.role} for u in users], indent=2))
        return
    if not users:
        console().print("access control is off: `conveyor auth init --admin NAME` turns it on")
    for u in users:
        console().print(f"{u.user}  {u.role}")


@auth.group()
def token() -> None:
    """API tokens for the HTTP management API (shown once, stored hashed)."""


@token.command("create")
@click.argument("name")
@click.option(
    "--days", type=int, default=30, show_default=True, help="Valid this many days (1-365)."
)
@click.pass_context
def token_create(ctx: click.Context, name: str, days: int) -> None:
    """A new token for user NAME, printed once on stdout (nothing else is)."""
    from conveyor.access import create_token

    with open_from_context(ctx) as project:
        issued = create_token(project.metadata, name, days=days, actor=current_user())
    console(stderr=True).print(
        f"token {issued.id} for {name}, valid until {issued.expires_at:%Y-%m-%d %H:%M} UTC; "
        "store it now, it is not shown again"
    )
    click.echo(issued.secret)


@token.command("list")
@click.option("--user", "name", help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def token_list(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Tokens by id (never the token itself), with their state."""
    from conveyor.access import list_tokens

    with open_from_context(ctx) as project:
        tokens = list_tokens(project.metadata, name)
    rows = [
        {
            "id": t.id,
            "user": t.user,
            "state": t.state,
            "created_at": t.created_at.isoformat(),
            "expires_at": t.expires_at.isoformat(),
        }
        for t in tokens
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        console().print(f"{r['id']}  {r['user']}  {r['state']}  expires {r['expires_at']}")


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke the token with id TOKEN_ID, at once."""
    from conveyor.access import revoke_token

    with open_from_context(ctx) as project:
        info = revoke_token(project.metadata, token_id, actor=current_user())
    console().print(f"token {info.id} of {info.user} revoked")

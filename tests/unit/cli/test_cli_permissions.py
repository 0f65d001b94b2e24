"""Every CLI command declares the permission it needs, and the roles decide who may run what
once `conveyor auth init` has turned access control on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click
import pytest

from conveyor import registry
from conveyor.access import ROLES, add_user, bootstrap_admin
from conveyor.cli import _main
from conveyor.cli._permissions import COMMANDS
from conveyor.core.digest import digest_bytes
from conveyor.project import open_project

if TYPE_CHECKING:
    from pathlib import Path


def _walk(command: click.Command, prefix: str = "") -> list[str]:
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        found: list[str] = []
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            found += _walk(sub, f"{prefix} {name}".strip())
        return found
    return [prefix]


def test_every_command_declares_a_permission() -> None:
    commands = set(_walk(_main.cli))
    assert commands - COMMANDS.keys() == set(), "commands without a permission"
    assert COMMANDS.keys() - commands == set(), "permissions of commands that do not exist"
    allowed = {"public", *{p for perms in ROLES.values() for p in perms}}
    assert set(COMMANDS.values()) <= allowed


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose model has v1 in production and v2 experimental, access control on."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "conveyor.yaml").write_text("project: p\n")
    with open_project(root) as opened:
        store = opened.metadata
        for tag in ("one", "two"):
            registry.register_version(
                store,
                model="churn",
                artifact_digest=digest_bytes(tag.encode()),
                metrics={},
                run_id=None,
                actor="sam",
            )
        policy = registry.load_policy(None)
        for stage in ("candidate", "production"):
            registry.promote(store, model="churn", version=1, to=stage, policy=policy, actor="o")
        bootstrap_admin(store, "ada", actor="ada")
        for role in ROLES:
            add_user(store, f"a-{role}", role, actor="ada")
    return root


@dataclass
class _Result:
    exit_code: int
    output: str


def _run(root: Path, user: str, *args: str) -> _Result:
    """The CLI's entry point in this process (exit codes as a shell sees them)."""
    import contextlib
    import io

    out = io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
    ):
        patch.setenv("CONVEYOR_USER", user)
        code = _main.main(["-C", str(root), *args])
    return _Result(code, out.getvalue())


@pytest.mark.parametrize(
    ("args", "may"),
    [
        (("model", "list"), set(ROLES)),
        (("promote", "churn", "2", "--to", "candidate"), {"scientist", "admin"}),
        (("rollback", "churn"), {"deployer", "admin"}),
        (("auth", "user", "list"), set(ROLES)),
        (("auth", "user", "add", "zed", "--role", "viewer"), {"admin"}),
    ],
)
def test_roles_decide_who_may_run_a_command(
    project: Path, args: tuple[str, ...], may: set[str]
) -> None:
    for role in ROLES:
        result = _run(project, f"a-{role}", *args)
        if role in may:
            assert result.exit_code in (0, 2), (role, args, result.output)
            assert "needs the permission" not in result.output
        else:
            assert result.exit_code == 1, (role, args, result.output)
            assert "needs the permission" in result.output
    stranger = _run(project, "mallory", *args)
    assert stranger.exit_code == 1
    assert "mallory has no role here" in stranger.output


def test_production_needs_a_deployer(project: Path) -> None:
    assert _run(project, "a-scientist", "promote", "churn", "2", "--to", "candidate").exit_code == 0
    refused = _run(project, "a-scientist", "promote", "churn", "2", "--to", "production")
    assert refused.exit_code == 1
    assert "'deploy'" in refused.output
    assert _run(project, "a-deployer", "promote", "churn", "2", "--to", "production").exit_code == 0


def test_auth_init_happens_once(project: Path) -> None:
    again = _run(project, "mallory", "auth", "init", "--admin", "mallory")
    assert again.exit_code == 2
    assert "already initialised" in again.output

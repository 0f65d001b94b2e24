"""The permission every command needs (see :mod:`conveyor.access.roles`).

Checked when a command opens the project (:func:`conveyor.cli._common.open_from_context`); a
command missing from this table is refused (deny by default), and a test enumerates every
command against it. ``public`` commands need no role: ``auth init`` (it refuses once access
control is set up), the demo (its own fresh store), and the data commands that only read the
files they are given.
"""

from __future__ import annotations

__all__ = ["COMMANDS", "permission_for"]

COMMANDS: dict[str, str] = {
    "init": "public",  # writes a new folder; no project, no store yet
    "ci": "run",
    "package": "read",
    "run": "run",
    "evaluate": "run",
    "reproduce": "read",
    # To candidate; `promote --to production|archived` needs "deploy" (checked by the command).
    "promote": "register",
    "approve": "review",
    "reject": "review",
    "rollback": "rollback",
    "deploy": "deploy",
    "rollout status": "read",
    "rollout pause": "deploy",
    "rollout resume": "deploy",
    "rollout abort": "deploy",
    "rollout run": "deploy",
    "serve": "read",
    "ui": "read",
    "store migrate": "admin",
    "model list": "read",
    "model show": "read",
    "model history": "read",
    "model report": "read",
    "lineage upstream": "read",
    "lineage downstream": "read",
    "lineage models-using": "read",
    "lineage evaluated-on": "read",
    "lineage at": "read",
    "lineage diff": "read",
    "changelog": "read",
    # Its rules' actions can halt a rollout and roll production back.
    "monitor run": "rollback",
    "monitor status": "read",
    "alerts list": "read",
    "incident list": "read",
    "incident show": "read",
    "incident timeline": "read",
    "incident ack": "deploy",
    "incident resolve": "deploy",
    "features list": "read",
    "features show": "read",
    "features apply": "register",
    "features materialize": "run",
    "features training-set": "read",
    "features get": "read",
    "features skew": "read",
    "audit verify": "read",
    "audit log": "read",
    "audit checkpoint": "admin",
    "data validate": "public",
    "data drift": "public",
    "data profile": "public",
    "demo": "public",
    "auth init": "public",
    "auth user add": "admin",
    "auth user list": "read",
    "auth token create": "admin",
    "auth token list": "admin",
    "auth token revoke": "admin",
}


def permission_for(path: str) -> str | None:
    """The permission of the command ``path`` (``"rollout pause"``), or None if it has none."""
    return COMMANDS.get(path)

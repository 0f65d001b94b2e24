"""Roles and permissions: what each role may do, in one table that every face consults.

=============  ================================================================================
role           permissions
=============  ================================================================================
``viewer``     ``read`` (registry, lineage, reports, audit), ``predict``
``scientist``  viewer's, plus ``run`` (pipelines, evaluations) and ``register`` (versions,
               promotion to candidate)
``approver``   viewer's, plus ``review`` (approve or reject a version for a stage)
``deployer``   viewer's, plus ``deploy`` (promotion to production, rollouts) and ``rollback``
``admin``      everything, plus ``admin`` (users, tokens, policies)
=============  ================================================================================

Roles are not ranked: an approver cannot deploy and a deployer cannot approve, so one person
holding one role cannot take a version to production alone. Every route and command names the
permission it needs; one that names none is refused (deny by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "PERMISSIONS",
    "PUBLIC",
    "ROLES",
    "allowed",
    "permission_of",
    "permissions_of",
    "requires",
]

_F = TypeVar("_F")

#: Needs no identity at all (health probes, metrics, the OpenAPI document).
PUBLIC: Final = "public"

PERMISSIONS: Final = ("read", "predict", "run", "register", "review", "deploy", "rollback", "admin")

_VIEWER = frozenset({"read", "predict"})
ROLES: Final[dict[str, frozenset[str]]] = {
    "viewer": _VIEWER,
    "scientist": _VIEWER | {"run", "register"},
    "approver": _VIEWER | {"review"},
    "deployer": _VIEWER | {"deploy", "rollback"},
    "admin": frozenset(PERMISSIONS),
}


def permissions_of(role: str | None) -> frozenset[str]:
    """The permissions of ``role`` (none for an unknown role or none)."""
    return ROLES.get(role or "", frozenset())


def allowed(role: str | None, permission: str) -> bool:
    """Whether ``role`` may do what ``permission`` names (``PUBLIC``: anyone)."""
    return permission == PUBLIC or permission in permissions_of(role)


def requires(permission: str) -> Callable[[_F], _F]:
    """Declare the permission an endpoint (an API route, a dashboard page) needs; the face
    that serves it checks it, and refuses to start with an endpoint that declares none."""

    def mark(endpoint: _F) -> _F:
        endpoint.permission = permission  # type: ignore[attr-defined]
        return endpoint

    return mark


def permission_of(endpoint: Any) -> str | None:
    """The permission ``endpoint`` declared with :func:`requires`, or None."""
    permission: str | None = getattr(endpoint, "permission", None)
    return permission

"""Access control: roles and their permissions, principals, API tokens.

See :mod:`conveyor.access.roles` for the permission table and
:mod:`conveyor.access.principals` for bootstrap, tokens and the checks.
"""

from __future__ import annotations

from conveyor.access.principals import (
    IssuedToken,
    Principal,
    TokenInfo,
    access_enabled,
    add_user,
    authenticate,
    bootstrap_admin,
    create_token,
    list_tokens,
    list_users,
    require,
    revoke_token,
    role_of,
)
from conveyor.access.roles import (
    PERMISSIONS,
    PUBLIC,
    ROLES,
    allowed,
    permission_of,
    permissions_of,
    requires,
)

__all__ = [
    "PERMISSIONS",
    "PUBLIC",
    "ROLES",
    "IssuedToken",
    "Principal",
    "TokenInfo",
    "access_enabled",
    "add_user",
    "allowed",
    "authenticate",
    "bootstrap_admin",
    "create_token",
    "list_tokens",
    "list_users",
    "permission_of",
    "permissions_of",
    "require",
    "requires",
    "revoke_token",
    "role_of",
]

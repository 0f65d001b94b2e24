"""Principals (users with a role) and their API tokens, in the metadata store.

**Bootstrap.** There are no default credentials. Until ``conveyor auth init --admin NAME`` names
the first admin, the store has no principals and access control is *off* for local commands
(a laptop's own SQLite file is protected by the file system), while the HTTP management API
refuses everything (no token can exist). Once initialised, every command and route checks the
acting user's role.

**Tokens.** A token is ``cvr_`` + 32 random bytes (URL-safe base64), shown once at creation.
The store keeps only its SHA-256 (a one-way function of 256 random bits: no salt or slow hash
needed, unlike passwords); a presented token is hashed, looked up by that hash and compared with
:func:`hmac.compare_digest`. Tokens expire (default 30 days, at most 365) and are revoked at
once: the next request that presents one reads its row. A token's id is the first 12 hex digits
of its hash: safe to show, log and audit; the token itself never is.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from conveyor.access.roles import ROLES, allowed
from conveyor.core.clock import utcnow
from conveyor.core.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnauthorizedError,
    UsageError,
)
from conveyor.core.names import validate_name
from conveyor.store.metadata.schema import principal, token

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore

__all__ = [
    "MAX_TOKEN_DAYS",
    "TOKEN_PREFIX",
    "IssuedToken",
    "Principal",
    "TokenInfo",
    "access_enabled",
    "add_user",
    "authenticate",
    "bootstrap_admin",
    "create_token",
    "list_tokens",
    "list_users",
    "require",
    "revoke_token",
    "role_of",
]

TOKEN_PREFIX = "cvr_"  # noqa: S105 (a prefix that marks our tokens, not a secret)
MAX_TOKEN_DAYS = 365
_ID_DIGITS = 12


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: ``secret`` is shown once and never stored."""

    id: str
    user: str
    secret: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    user: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= utcnow() else "active"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", hint=f"roles: {', '.join(ROLES)}")


def access_enabled(store: MetadataStore) -> bool:
    """Whether access control is on: some principal exists."""
    with store.read() as conn:
        return conn.execute(sa.select(principal.c.user).limit(1)).first() is not None


def role_of(store: MetadataStore, user: str) -> str | None:
    with store.read() as conn:
        role: str | None = conn.execute(
            sa.select(principal.c.role).where(principal.c.user == user)
        ).scalar_one_or_none()
    return role


def require(store: MetadataStore, user: str, permission: str, *, what: str) -> None:
    """Refuse ``user`` doing ``what`` unless their role has ``permission`` (when access
    control is on).

    Raises:
        ForbiddenError: naming the user, their role (or that they have none) and who may.
    """
    if not access_enabled(store):
        return
    role = role_of(store, user)
    if allowed(role, permission):
        return
    may = ", ".join(r for r in ROLES if permission in ROLES[r])
    has = f"has the role {role}" if role else "has no role here"
    raise ForbiddenError(
        f"{user} {has}, and {what} needs the permission '{permission}' ({may})",
        hint="an admin grants roles: `conveyor auth user add NAME --role ROLE`",
    )


def bootstrap_admin(store: MetadataStore, user: str, *, actor: str) -> Principal:
    """Make ``user`` the first admin; refused once any principal exists.

    Raises:
        ConflictError: access control is already initialised.
    """
    validate_name("user", user)
    with store.write(actor) as tx:
        if tx.conn.execute(sa.select(principal.c.user).limit(1)).first() is not None:
            raise ConflictError(
                "access control is already initialised",
                hint="an admin adds users with `conveyor auth user add NAME --role ROLE`",
            )
        tx.conn.execute(sa.insert(principal).values(user=user, role="admin", created_at=tx.at))
        tx.audit("auth.initialised", f"user:{user}", {"role": "admin"})
    return Principal(user, "admin")


def add_user(store: MetadataStore, user: str, role: str, *, actor: str) -> Principal:
    """Add ``user`` with ``role``, or change their role (an admin's act: the caller checks).

    Raises:
        UsageError: an unknown role.
        ConflictError: it would leave no admin.
    """
    validate_name("user", user)
    _check_role(role)
    with store.write(actor) as tx:
        current = tx.conn.execute(
            sa.select(principal.c.role).where(principal.c.user == user)
        ).scalar_one_or_none()
        if current is None:
            tx.conn.execute(sa.insert(principal).values(user=user, role=role, created_at=tx.at))
        else:
            if current == "admin" and role != "admin":
                admins = tx.conn.execute(
                    sa.select(sa.func.count()).where(principal.c.role == "admin")
                ).scalar_one()
                if admins <= 1:
                    raise ConflictError(
                        f"{user} is the last admin", hint="make someone else admin first"
                    )
            tx.conn.execute(sa.update(principal).where(principal.c.user == user).values(role=role))
        tx.audit("auth.user_set", f"user:{user}", {"role": role, "previous_role": current})
    return Principal(user, role)


def list_users(store: MetadataStore) -> list[Principal]:
    with store.read() as conn:
        rows = conn.execute(
            sa.select(principal.c.user, principal.c.role).order_by(principal.c.user)
        )
        return [Principal(u, r) for u, r in rows]


def create_token(store: MetadataStore, user: str, *, days: int = 30, actor: str) -> IssuedToken:
    """A new API token for ``user``, valid ``days`` days.

    Raises:
        NotFoundError: ``user`` is not a principal.
        UsageError: ``days`` outside 1..365.
    """
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise UsageError(
            f"a token is valid 1 to {MAX_TOKEN_DAYS} days, not {days}",
            hint="e.g. `--days 30`; create a new one when it expires",
        )
    secret = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    digest = _hash(secret)
    with store.write(actor) as tx:
        if (
            tx.conn.execute(sa.select(principal.c.user).where(principal.c.user == user)).first()
            is None
        ):
            raise NotFoundError(
                f"there is no user {user!r}",
                hint=f"add them first: `conveyor auth user add {user} --role viewer`",
            )
        expires = tx.at + dt.timedelta(days=days)
        tx.conn.execute(
            sa.insert(token).values(
                hash=digest, user=user, expires_at=expires, revoked_at=None, created_at=tx.at
            )
        )
        # The id only: the token itself is never written anywhere but the caller's screen.
        tx.audit(
            "auth.token_created",
            f"user:{user}",
            {"token_id": digest[:_ID_DIGITS], "expires_at": expires.isoformat()},
        )
    return IssuedToken(digest[:_ID_DIGITS], user, secret, expires)


def list_tokens(store: MetadataStore, user: str | None = None) -> list[TokenInfo]:
    query = sa.select(token).order_by(token.c.created_at)
    if user is not None:
        query = query.where(token.c.user == user)
    with store.read() as conn:
        return [
            TokenInfo(r.hash[:_ID_DIGITS], r.user, r.created_at, r.expires_at, r.revoked_at)
            for r in conn.execute(query)
        ]


def revoke_token(store: MetadataStore, token_id: str, *, actor: str) -> TokenInfo:
    """Revoke the token whose id is ``token_id``, at once.

    Raises:
        NotFoundError: no token with that id.
        UsageError: an id that is not 12 hex digits.
    """
    if len(token_id) != _ID_DIGITS or any(c not in "0123456789abcdef" for c in token_id):
        raise UsageError(
            f"{token_id!r} is not a token id",
            hint="token ids are 12 hex digits: see `conveyor auth token list`",
        )
    with store.write(actor) as tx:
        row = tx.conn.execute(sa.select(token).where(token.c.hash.startswith(token_id))).first()
        if row is None:
            raise NotFoundError(
                f"there is no token {token_id}", hint="see `conveyor auth token list`"
            )
        tx.conn.execute(sa.update(token).where(token.c.hash == row.hash).values(revoked_at=tx.at))
        tx.audit("auth.token_revoked", f"user:{row.user}", {"token_id": token_id})
    return TokenInfo(token_id, row.user, row.created_at, row.expires_at, tx.at)


def authenticate(store: MetadataStore, presented: str | None) -> Principal:
    """The principal a bearer token stands for.

    Raises:
        UnauthorizedError: no token, or an unknown, expired or revoked one (the message never
            contains the token).
    """
    if not presented:
        raise UnauthorizedError(
            "this route needs a bearer token",
            hint="send `Authorization: Bearer <token>`; an admin creates one with "
            "`conveyor auth token create USER`",
        )
    digest = _hash(presented)
    with store.read() as conn:
        row = conn.execute(
            sa.select(
                token.c.hash, token.c.user, token.c.expires_at, token.c.revoked_at, principal.c.role
            )
            .join(principal, principal.c.user == token.c.user)
            .where(token.c.hash == digest)
        ).first()
    if row is None or not hmac.compare_digest(row.hash, digest):
        raise UnauthorizedError("the bearer token is not valid", hint="check the token you sent")
    if row.revoked_at is not None:
        raise UnauthorizedError(
            f"token {digest[:_ID_DIGITS]} was revoked", hint="ask an admin for a new token"
        )
    if row.expires_at <= utcnow():
        raise UnauthorizedError(
            f"token {digest[:_ID_DIGITS]} expired at {row.expires_at.isoformat()}",
            hint="ask an admin for a new token",
        )
    return Principal(row.user, row.role)

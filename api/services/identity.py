"""Who a caller is: roles, the resolved principal, token values and views (no database access)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any

import msgspec

from engine.db.models import ApiToken, now
from engine.errors import InvalidInput, NotFound

TOKEN_PREFIX = "rl_"
ROLES = ("viewer", "editor", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}


class NotAuthenticated(Exception):
    """Missing, malformed, unknown, revoked or expired credentials (always the same answer)."""


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated caller, resolved for one workspace."""

    user_id: str
    token_id: str
    workspace_id: str
    role: str
    kb_ids: tuple[str, ...] | None  # None: every knowledge base of the workspace

    def has_role(self, needed: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]

    # The knowledge-base rule, written once: a token may be limited to some knowledge bases of its
    # workspace, and the others are missing to it (404), exactly like unknown ids.
    def allows_kb(self, kb_id: str) -> bool:
        return self.kb_ids is None or kb_id in self.kb_ids

    def require_kb(self, kb_id: str) -> None:
        """Raise ``NotFound`` for a knowledge base outside the token's scope."""
        if not self.allows_kb(kb_id):
            raise NotFound("knowledge base", kb_id)

    def narrow_kbs(self, kb_ids: Sequence[str] | None) -> tuple[str, ...] | None:
        """The part of ``kb_ids`` the token may read (``None``: no narrowing asked, the token's own scope)."""
        if kb_ids is None:
            return self.kb_ids
        return tuple(kb for kb in dict.fromkeys(kb_ids) if self.allows_kb(kb))


class IssuedToken(msgspec.Struct, frozen=True, kw_only=True):
    token_id: str
    secret: str


class TokenInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A token as shown to people: never its secret nor the secret's hash."""

    id: str
    name: str
    prefix: str
    user_id: str
    workspace_id: str
    role: str | None
    kb_ids: list[str] | None
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None
    created_at: float
    updated_at: float
    active: bool

    @classmethod
    def of(cls, row: ApiToken) -> TokenInfo:
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            user_id=row.user_id,
            workspace_id=row.workspace_id,
            role=row.role,
            kb_ids=list(row.kb_ids) if row.kb_ids is not None else None,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            active=_active(row),
        )


class IssuedTokenInfo(TokenInfo, frozen=True, kw_only=True):
    """Returned by create and regenerate only: the one time the secret is shown."""

    secret: str


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    token_id: str
    action: str
    actor_token_id: str | None
    detail: dict[str, Any] | None
    at: float


class PrincipalInfo(msgspec.Struct, frozen=True, kw_only=True):
    """``/me`` and ``/tokens/validate``: who the caller is, in which workspace, with which token."""

    user_id: str
    user_name: str
    workspace_id: str
    workspace_name: str
    role: str
    kb_ids: list[str] | None
    token: TokenInfo


class Paged(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Any]
    total: int


def _active(row: ApiToken) -> bool:
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > now())


MAX_LIFETIME_S = 10 * 365 * 86400.0


def check_expiry(expires_at: float | None) -> float | None:
    """A new expiry lies in the future and at most ten years ahead."""
    if expires_at is not None and not now() < expires_at <= now() + MAX_LIFETIME_S:
        raise InvalidInput("expires_at must be in the future and at most ten years ahead")
    return expires_at


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def lower_role(a: str, b: str | None) -> str:
    if b is None:
        return a
    return a if ROLE_RANK[a] <= ROLE_RANK[b] else b

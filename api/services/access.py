"""Users, workspaces, memberships and API tokens: who the caller is and what they may do.

Tokens carry 256 random bits behind a recognisable ``rl_`` prefix; only their SHA-256 is stored
(high-entropy secrets need no slow hash), and they are shown once, at creation or regeneration.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.db.models import ApiToken, Membership, TokenAudit, User, Workspace, new_id, now
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

    def allows_kb(self, kb_id: str) -> bool:
        return self.kb_ids is None or kb_id in self.kb_ids


class IssuedToken(msgspec.Struct, frozen=True, kw_only=True):
    token_id: str
    secret: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def lower_role(a: str, b: str | None) -> str:
    if b is None:
        return a
    return a if ROLE_RANK[a] <= ROLE_RANK[b] else b


class AccessService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def bootstrap(self, *, secret: str | None = None) -> IssuedToken | None:
        """On an empty database: an admin user, a ``default`` workspace and an admin token."""
        async with self.sessions() as session:
            if await session.scalar(select(User.id).limit(1)) is not None:
                return None
            user = User(id=new_id("usr"), name="admin")
            workspace = Workspace(id=new_id("ws"), name="default")
            session.add_all([user, workspace])
            await session.flush()
            session.add(Membership(workspace_id=workspace.id, user_id=user.id, role="admin"))
            issued = self._issue(session, user.id, workspace.id, name="bootstrap admin", secret=secret)
            await session.commit()
            return issued

    def _issue(
        self,
        session: AsyncSession,
        user_id: str,
        workspace_id: str,
        *,
        name: str,
        role: str | None = None,
        kb_ids: Sequence[str] | None = None,
        expires_at: float | None = None,
        secret: str | None = None,
        actor_token_id: str | None = None,
    ) -> IssuedToken:
        secret = secret or new_secret()
        if not secret.startswith(TOKEN_PREFIX) or len(secret) < 24:
            raise InvalidInput("token secrets start with 'rl_' and carry at least 128 random bits")
        token = ApiToken(
            id=new_id("tok"), user_id=user_id, workspace_id=workspace_id, name=name, prefix=secret[:10],
            secret_hash=hash_secret(secret), role=role, kb_ids=list(kb_ids) if kb_ids is not None else None,
            expires_at=expires_at,
        )
        session.add(token)
        session.add(TokenAudit(token_id=token.id, workspace_id=workspace_id, action="created",
                               actor_token_id=actor_token_id, detail={"name": name, "role": role}))
        return IssuedToken(token_id=token.id, secret=secret)

    async def create_user_token(
        self, *, workspace_name: str, user_name: str, role: str, token_name: str
    ) -> IssuedToken:
        """CLI helper (``ragline token create``): a user with ``role`` in a workspace (created if missing)."""
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        async with self.sessions() as session:
            workspace = await session.scalar(select(Workspace).where(Workspace.name == workspace_name))
            if workspace is None:
                workspace = Workspace(id=new_id("ws"), name=workspace_name)
                session.add(workspace)
            user = User(id=new_id("usr"), name=user_name)
            session.add(user)
            await session.flush()
            session.add(Membership(workspace_id=workspace.id, user_id=user.id, role=role))
            issued = self._issue(session, user.id, workspace.id, name=token_name)
            await session.commit()
            return issued

    async def authenticate(self, secret: str, *, workspace_id: str | None = None) -> Principal:
        """Resolve a presented secret (and an optional ``X-Workspace-ID``) to a principal."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            raise NotAuthenticated()
        digest = hash_secret(secret)
        async with self.sessions() as session:
            token = await session.scalar(select(ApiToken).where(ApiToken.secret_hash == digest))
            if token is None or not hmac.compare_digest(token.secret_hash, digest):
                raise NotAuthenticated()
            if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now()):
                raise NotAuthenticated()
            target = workspace_id or token.workspace_id
            if token.kb_ids is not None and target != token.workspace_id:
                raise NotFound("workspace", target)  # a knowledge-limited token is bound to its workspace
            member = await session.get(Membership, (target, token.user_id))
            if member is None:
                raise NotFound("workspace", target)
            if token.last_used_at is None or now() - token.last_used_at > 60:
                token.last_used_at = now()  # coarse, to avoid a write per request
                await session.commit()
            return Principal(
                user_id=token.user_id, token_id=token.id, workspace_id=target,
                role=lower_role(member.role, token.role),
                kb_ids=tuple(token.kb_ids) if token.kb_ids is not None else None,
            )

"""Users, workspaces, memberships and API tokens: who the caller is and what they may do.

Tokens carry 256 random bits behind a recognisable ``rl_`` prefix; only their SHA-256 is stored
(high-entropy secrets need no slow hash), and they are shown once, at creation or regeneration.

Token management rules (deny by default): a caller manages a token only when it belongs to the
caller's workspace, is the caller's own (admins: any member's), and is no more powerful than the
caller's token (effective role not above the caller's, knowledge-base scope inside the caller's).
Anything else is reported as missing (404), exactly like an unknown id. Every check reads the
database on every request: revocation, expiry and regeneration take effect on the next request.

Minting (every member for themselves, admins also for other members) has a strict budget per acting
user: ``mint_per_minute`` and ``mint_per_day`` new secrets through create and regenerate together, in
this process's memory; beyond it ``RateLimited`` (429 with Retry-After). Only requests that would mint
count: refusals (a stronger role, a foreign knowledge base, another member's token) do not. Login has
its own limits (``api.services.users``); bootstrap and the CLI are the operator's and are not counted.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

import msgspec
from limits import RateLimitItemPerDay, RateLimitItemPerMinute
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import (
    ROLE_RANK,
    ROLES,
    TOKEN_PREFIX,
    AuditEntry,
    IssuedToken,
    IssuedTokenInfo,
    NotAuthenticated,
    Paged,
    Principal,
    PrincipalInfo,
    TokenInfo,
    _active,
    check_expiry,
    hash_secret,
    lower_role,
    new_secret,
)
from api.services.rate_limits import Budget
from engine.db.models import ApiToken, KnowledgeBase, Membership, TokenAudit, User, Workspace, new_id, now
from engine.db.paging import fetch_page
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied


def _audit(session: AsyncSession, token: ApiToken, action: str, actor: Principal | None, **detail: Any) -> None:
    session.add(
        TokenAudit(
            token_id=token.id,
            workspace_id=token.workspace_id,
            action=action,
            actor_token_id=actor.token_id if actor else None,
            detail=detail or None,
        )
    )


def issue_token(
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
    """Add a token (and its ``created`` audit entry) to ``session``; the caller commits. The one way tokens
    are made: bootstrap, the CLI, ``POST /tokens`` and login (``api.services.users``)."""
    secret = secret or new_secret()
    if not secret.startswith(TOKEN_PREFIX) or len(secret) < 24:
        raise InvalidInput("token secrets start with 'rl_' and carry at least 128 random bits")
    token = ApiToken(
        id=new_id("tok"),
        user_id=user_id,
        workspace_id=workspace_id,
        name=name,
        prefix=secret[:10],
        secret_hash=hash_secret(secret),
        role=role,
        kb_ids=list(kb_ids) if kb_ids is not None else None,
        expires_at=expires_at,
    )
    session.add(token)
    session.add(
        TokenAudit(
            token_id=token.id,
            workspace_id=workspace_id,
            action="created",
            actor_token_id=actor_token_id,
            detail={"name": name, "role": role},
        )
    )
    return IssuedToken(token_id=token.id, secret=secret)


class AccessService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, mint_per_minute: int = 10, mint_per_day: int = 100
    ) -> None:
        self.sessions = sessions
        self.minting = Budget(
            RateLimitItemPerMinute(max(1, mint_per_minute)),
            RateLimitItemPerDay(max(1, mint_per_day)),
            message="too many tokens minted by this user; try again later",
        )

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
            issued = issue_token(session, user.id, workspace.id, name="bootstrap admin", secret=secret)
            await session.commit()
            return issued

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
            issued = issue_token(session, user.id, workspace.id, name=token_name)
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
                user_id=token.user_id,
                token_id=token.id,
                workspace_id=target,
                role=lower_role(member.role, token.role),
                kb_ids=tuple(token.kb_ids) if token.kb_ids is not None else None,
            )

    # -- token management (the /api/v1/tokens routes) ---------------------------------------------

    async def _owner_role(self, session: AsyncSession, token: ApiToken) -> str:
        member = await session.get(Membership, (token.workspace_id, token.user_id))
        return member.role if member is not None else ROLES[0]

    async def _manageable(self, session: AsyncSession, principal: Principal, token: ApiToken | None) -> bool:
        if token is None or token.workspace_id != principal.workspace_id:
            return False
        if principal.role != "admin" and token.user_id != principal.user_id:
            return False
        if ROLE_RANK[lower_role(await self._owner_role(session, token), token.role)] > ROLE_RANK[principal.role]:
            return False  # a weaker token must not read or regenerate a stronger one
        if principal.kb_ids is not None:
            return token.kb_ids is not None and set(token.kb_ids) <= set(principal.kb_ids)
        return True

    async def _token(self, session: AsyncSession, principal: Principal, token_id: str) -> ApiToken:
        token = await session.get(ApiToken, token_id)
        if token is None or not await self._manageable(session, principal, token):
            raise NotFound("token", token_id)
        return token

    async def _checked_kbs(
        self, session: AsyncSession, principal: Principal, kb_ids: Sequence[str] | None
    ) -> list[str] | None:
        """The knowledge bases a new or updated token may be limited to: the caller's, in its workspace."""
        if kb_ids is None:
            return list(principal.kb_ids) if principal.kb_ids is not None else None
        wanted = list(dict.fromkeys(kb_ids))
        found = set(
            await session.scalars(
                select(KnowledgeBase.id).where(
                    KnowledgeBase.workspace_id == principal.workspace_id, KnowledgeBase.id.in_(wanted)
                )
            )
        )
        unknown = [kb for kb in wanted if kb not in found or not principal.allows_kb(kb)]
        if unknown:
            raise InvalidInput("kb_ids names knowledge bases that do not exist in this workspace")
        return wanted

    @staticmethod
    def _check_role_cap(principal: Principal, role: str | None) -> None:
        if role is not None and ROLE_RANK[role] > ROLE_RANK[principal.role]:
            raise PermissionDenied(f"a {principal.role} cannot grant the {role} role")

    async def create_token(
        self,
        principal: Principal,
        *,
        name: str,
        role: str | None = None,
        kb_ids: Sequence[str] | None = None,
        expires_at: float | None = None,
        user_id: str | None = None,
    ) -> IssuedTokenInfo:
        """Issue a token for the caller (admins: for any member), never stronger than the caller's.
        Counts against the caller's minting budget (``RateLimited`` beyond it)."""
        self._check_role_cap(principal, role)
        owner = user_id or principal.user_id
        if owner != principal.user_id and principal.role != "admin":
            raise PermissionDenied("only admins issue tokens for other members")
        expiry = check_expiry(expires_at)
        async with self.sessions() as session:
            if await session.get(Membership, (principal.workspace_id, owner)) is None:
                raise NotFound("user", owner)
            limited = await self._checked_kbs(session, principal, kb_ids)
            self.minting.take(principal.user_id)
            issued = issue_token(
                session,
                owner,
                principal.workspace_id,
                name=name,
                role=role or principal.role,
                kb_ids=limited,
                expires_at=expiry,
                actor_token_id=principal.token_id,
            )
            await session.commit()
            row = await session.get(ApiToken, issued.token_id)
            assert row is not None
            return IssuedTokenInfo(**msgspec.structs.asdict(TokenInfo.of(row)), secret=issued.secret)

    async def list_tokens(self, principal: Principal, *, page: int = 1, limit: int = 20) -> Paged:
        """The tokens the caller may manage (admins: the workspace's), newest first."""
        query = select(ApiToken).where(ApiToken.workspace_id == principal.workspace_id)
        if principal.role != "admin":
            query = query.where(ApiToken.user_id == principal.user_id)
        async with self.sessions() as session:
            rows = list(await session.scalars(query.order_by(ApiToken.created_at.desc(), ApiToken.id)))
            visible = [r for r in rows if await self._manageable(session, principal, r)]
        start = (page - 1) * limit
        return Paged(items=[TokenInfo.of(r) for r in visible[start : start + limit]], total=len(visible))

    async def get_token(self, principal: Principal, token_id: str) -> TokenInfo:
        async with self.sessions() as session:
            return TokenInfo.of(await self._token(session, principal, token_id))

    async def update_token(
        self,
        principal: Principal,
        token_id: str,
        *,
        name: str | None = None,
        role: str | msgspec.UnsetType | None = msgspec.UNSET,
        kb_ids: Sequence[str] | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> TokenInfo:
        """Rename, re-cap (``None``: the caller's role) or re-scope a token; unset fields stay."""
        async with self.sessions() as session:
            token = await self._token(session, principal, token_id)
            changed: dict[str, Any] = {}
            if name is not None:
                token.name = changed["name"] = name
            if role is not msgspec.UNSET:
                self._check_role_cap(principal, role)
                token.role = changed["role"] = role or principal.role
            if kb_ids is not msgspec.UNSET:
                token.kb_ids = changed["kb_ids"] = await self._checked_kbs(session, principal, kb_ids)
            token.updated_at = now()
            _audit(session, token, "updated", principal, **changed)
            await session.commit()
            return TokenInfo.of(token)

    async def revoke_token(self, principal: Principal, token_id: str) -> TokenInfo:
        """Revoke at once (idempotent); the next request with this token gets 401."""
        async with self.sessions() as session:
            token = await self._token(session, principal, token_id)
            if token.revoked_at is None:
                token.revoked_at = token.updated_at = now()
                _audit(session, token, "revoked", principal)
                await session.commit()
            return TokenInfo.of(token)

    async def renew_token(self, principal: Principal, token_id: str, *, expires_at: float | None) -> TokenInfo:
        """New expiry (``None``: never), same secret. A revoked token stays revoked."""
        async with self.sessions() as session:
            token = await self._token(session, principal, token_id)
            if token.revoked_at is not None:
                raise Conflict("a revoked token cannot be renewed")
            token.expires_at = check_expiry(expires_at)
            token.updated_at = now()
            _audit(session, token, "renewed", principal, expires_at=expires_at)
            await session.commit()
            return TokenInfo.of(token)

    async def regenerate_token(self, principal: Principal, token_id: str) -> IssuedTokenInfo:
        """A new secret (shown once); the old one stops working on the next request. Counts against the
        caller's minting budget, like ``create_token``."""
        async with self.sessions() as session:
            token = await self._token(session, principal, token_id)
            if not _active(token):
                raise Conflict("a revoked or expired token cannot be regenerated")
            self.minting.take(principal.user_id)
            secret = new_secret()
            token.secret_hash, token.prefix, token.updated_at = hash_secret(secret), secret[:10], now()
            _audit(session, token, "regenerated", principal)
            await session.commit()
            return IssuedTokenInfo(**msgspec.structs.asdict(TokenInfo.of(token)), secret=secret)

    async def delete_token(self, principal: Principal, token_id: str) -> None:
        """Delete a token; its audit trail stays in the workspace audit log."""
        async with self.sessions() as session:
            token = await self._token(session, principal, token_id)
            _audit(session, token, "deleted", principal, name=token.name)
            await session.delete(token)
            await session.commit()

    async def token_audit(self, principal: Principal, token_id: str, *, page: int = 1, limit: int = 20) -> Paged:
        async with self.sessions() as session:
            await self._token(session, principal, token_id)
        return await self._audit_page([TokenAudit.token_id == token_id], page=page, limit=limit)

    async def workspace_audit(self, principal: Principal, *, page: int = 1, limit: int = 20) -> Paged:
        """Every token event of the workspace (admins only), newest first."""
        if principal.role != "admin" or principal.kb_ids is not None:
            raise PermissionDenied("the workspace audit log is for admins with unlimited tokens")
        return await self._audit_page([TokenAudit.workspace_id == principal.workspace_id], page=page, limit=limit)

    async def _audit_page(self, where: list[Any], *, page: int, limit: int) -> Paged:
        async with self.sessions() as session:
            total, rows = await fetch_page(session, TokenAudit, where, [TokenAudit.id.desc()], page=page, limit=limit)
            items = [
                AuditEntry(
                    id=r.id,
                    token_id=r.token_id,
                    action=r.action,
                    actor_token_id=r.actor_token_id,
                    detail=r.detail,
                    at=r.at,
                )
                for r in rows
            ]
        return Paged(items=items, total=total)

    async def describe(self, principal: Principal) -> PrincipalInfo:
        """The caller: user, workspace, effective role and the token in use."""
        async with self.sessions() as session:
            user = await session.get(User, principal.user_id)
            workspace = await session.get(Workspace, principal.workspace_id)
            token = await session.get(ApiToken, principal.token_id)
            if user is None or workspace is None or token is None:
                raise NotFound("token", principal.token_id)
            return PrincipalInfo(
                user_id=user.id,
                user_name=user.name,
                workspace_id=workspace.id,
                workspace_name=workspace.name,
                role=principal.role,
                kb_ids=list(principal.kb_ids) if principal.kb_ids is not None else None,
                token=TokenInfo.of(token),
            )

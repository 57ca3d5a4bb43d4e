"""Workspaces and their members. The guard has already resolved the caller's role in the workspace."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import ROLES, Paged, Principal, TokenInfo
from engine.db.models import ApiToken, Base, Membership, TokenAudit, User, Workspace, new_id, now
from engine.errors import Conflict, NotFound, PermissionDenied
from engine.ids import utc
from ingest.service import KnowledgeService


class WorkspaceInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    role: str  # the caller's membership role
    created_at: datetime


class MemberInfo(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    user_name: str
    role: str
    created_at: datetime


class WorkspaceService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], knowledge: KnowledgeService) -> None:
        self.sessions = sessions
        self.knowledge = knowledge

    async def list_for(self, principal: Principal, *, page: int = 1, limit: int = 20) -> Paged:
        """The caller's workspaces; a knowledge-limited token only knows its own."""
        where: list[Any] = [Membership.user_id == principal.user_id]
        if principal.kb_ids is not None:
            where.append(Membership.workspace_id == principal.workspace_id)
        async with self.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(Membership).where(*where)) or 0
            rows = await session.execute(
                select(Workspace, Membership.role)
                .join(Membership, Membership.workspace_id == Workspace.id)
                .where(*where)
                .order_by(Workspace.created_at, Workspace.id)
                .offset((page - 1) * limit)
                .limit(limit)
            )
            items = [WorkspaceInfo(id=w.id, name=w.name, role=role, created_at=utc(w.created_at)) for w, role in rows]
        return Paged(items=items, total=total)

    async def create(self, principal: Principal, name: str) -> WorkspaceInfo:
        """A new workspace with the caller as its only admin."""
        if principal.kb_ids is not None:
            raise PermissionDenied("a token limited to knowledge bases cannot create workspaces")
        async with self.sessions() as session:
            workspace = Workspace(id=new_id("ws"), name=name)
            session.add(workspace)
            await session.flush()
            session.add(Membership(workspace_id=workspace.id, user_id=principal.user_id, role="admin"))
            await session.commit()
            return WorkspaceInfo(id=workspace.id, name=name, role="admin", created_at=utc(workspace.created_at))

    async def get(self, principal: Principal) -> WorkspaceInfo:
        async with self.sessions() as session:
            workspace = await session.get(Workspace, principal.workspace_id)
            if workspace is None:
                raise NotFound("workspace", principal.workspace_id)
            return WorkspaceInfo(
                id=workspace.id, name=workspace.name, role=principal.role, created_at=utc(workspace.created_at)
            )

    async def rename(self, principal: Principal, name: str) -> WorkspaceInfo:
        async with self.sessions() as session:
            workspace = await session.get(Workspace, principal.workspace_id)
            if workspace is None:
                raise NotFound("workspace", principal.workspace_id)
            workspace.name = name
            await session.commit()
        return await self.get(principal)

    async def delete(self, principal: Principal) -> None:
        """Delete the workspace with its knowledge (vectors and originals too) and every row it owns."""
        async with self.sessions() as session:
            token = await session.get(ApiToken, principal.token_id)
            if token is not None and token.workspace_id == principal.workspace_id:
                raise Conflict("a token cannot delete the workspace it belongs to; use a token of another workspace")
        while (kbs := await self.knowledge.list_kbs(principal.workspace_id, limit=100)).items:
            for kb in kbs.items:
                await self.knowledge.delete_kb(principal.workspace_id, kb.id)
        async with self.sessions() as session:
            # tables without a foreign key to workspaces (runs, events, audit...) are cleared by column
            for table in reversed(Base.metadata.sorted_tables):
                if "workspace_id" in table.c and table.name != "workspaces":
                    await session.execute(table.delete().where(table.c.workspace_id == principal.workspace_id))
            await session.execute(delete(Workspace).where(Workspace.id == principal.workspace_id))
            await session.commit()

    # -- members --------------------------------------------------------------------------------

    async def members(self, principal: Principal, *, page: int = 1, limit: int = 20) -> Paged:
        where = [Membership.workspace_id == principal.workspace_id]
        async with self.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(Membership).where(*where)) or 0
            rows = await session.execute(
                select(Membership, User.name)
                .join(User, User.id == Membership.user_id)
                .where(*where)
                .order_by(Membership.created_at, Membership.user_id)
                .offset((page - 1) * limit)
                .limit(limit)
            )
            items = [
                MemberInfo(user_id=m.user_id, user_name=n, role=m.role, created_at=utc(m.created_at)) for m, n in rows
            ]
        return Paged(items=items, total=total)

    async def add_member(self, principal: Principal, user_id: str, role: str) -> MemberInfo:
        async with self.sessions() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound("user", user_id)
            if await session.get(Membership, (principal.workspace_id, user_id)) is not None:
                raise Conflict("this user is already a member; change the role instead")
            member = Membership(workspace_id=principal.workspace_id, user_id=user_id, role=role, created_at=now())
            session.add(member)
            await session.commit()
            return MemberInfo(user_id=user_id, user_name=user.name, role=role, created_at=utc(member.created_at))

    async def _member(self, session: AsyncSession, principal: Principal, user_id: str) -> Membership:
        member = await session.get(Membership, (principal.workspace_id, user_id))
        if member is None:
            raise NotFound("member", user_id)
        return member

    async def _keep_an_admin(self, session: AsyncSession, member: Membership) -> None:
        admins = (
            await session.scalar(
                select(func.count())
                .select_from(Membership)
                .where(Membership.workspace_id == member.workspace_id, Membership.role == "admin")
            )
            or 0
        )
        if member.role == "admin" and admins <= 1:
            raise Conflict("a workspace keeps at least one admin")

    async def set_role(self, principal: Principal, user_id: str, role: str) -> MemberInfo:
        assert role in ROLES
        async with self.sessions() as session:
            member = await self._member(session, principal, user_id)
            if role != "admin":
                await self._keep_an_admin(session, member)
            member.role = role
            await session.commit()
            user = await session.get(User, user_id)
            return MemberInfo(
                user_id=user_id, user_name=user.name if user else "", role=role, created_at=utc(member.created_at)
            )

    async def remove_member(self, principal: Principal, user_id: str) -> list[TokenInfo]:
        """Remove a member and revoke their tokens of this workspace; returns the revoked tokens."""
        async with self.sessions() as session:
            member = await self._member(session, principal, user_id)
            await self._keep_an_admin(session, member)
            tokens = list(
                await session.scalars(
                    select(ApiToken).where(
                        ApiToken.workspace_id == principal.workspace_id,
                        ApiToken.user_id == user_id,
                        ApiToken.revoked_at.is_(None),
                    )
                )
            )
            for token in tokens:
                token.revoked_at = token.updated_at = now()
                session.add(
                    TokenAudit(
                        token_id=token.id,
                        workspace_id=token.workspace_id,
                        action="revoked",
                        actor_token_id=principal.token_id,
                        detail={"reason": "member removed"},
                    )
                )
            await session.delete(member)
            await session.commit()
            return [TokenInfo.of(t) for t in tokens]

"""Environments (dev, staging, production) per workspace; every run runs in one, the default unless chosen.

A workspace gets a ``production`` environment, its default, the first time it needs one. The default can be
moved to another environment; the last environment cannot be deleted, nor the default while others exist.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from engine.db.models import Environment, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import Conflict, NotFound
from engine.ids import utc
from ingest.views import Page

DEFAULT_ENVIRONMENT = "production"


class EnvironmentInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    description: str
    is_default: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Environment) -> EnvironmentInfo:
        return cls(
            id=row.id, name=row.name, description=row.description, is_default=row.is_default,
            created_at=utc(row.created_at), updated_at=utc(row.updated_at),
        )  # fmt: skip


class EnvironmentFields(msgspec.Struct, kw_only=True):
    name: str | None = None
    description: str | None = None
    is_default: bool | None = None


class EnvironmentService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def _ensure_default(self, session: AsyncSession, workspace_id: str) -> None:
        if await session.scalar(select(Environment.id).where(Environment.workspace_id == workspace_id).limit(1)):
            return
        session.add(Environment(id=new_id("env"), workspace_id=workspace_id, name=DEFAULT_ENVIRONMENT,
                                description="", is_default=True, created_at=now(), updated_at=now()))
        try:
            await session.commit()
        except IntegrityError:  # made by a concurrent request meanwhile
            await session.rollback()

    async def resolve(self, workspace_id: str, ref: str | None) -> EnvironmentInfo:
        """The environment named (by id or name) or the workspace's default. Raises ``NotFound``."""
        async with self.sessions() as session:
            await self._ensure_default(session, workspace_id)
            where = [Environment.workspace_id == workspace_id]
            if ref is None:
                where.append(Environment.is_default.is_(True))
            else:
                where.append((Environment.id == ref) | (Environment.name == ref))
            row = await session.scalar(select(Environment).where(*where).limit(1))
            if row is None:
                raise NotFound("environment", ref)
            return EnvironmentInfo.of(row)

    async def list(self, principal: Principal, *, page: int, limit: int) -> Page[EnvironmentInfo]:
        async with self.sessions() as session:
            await self._ensure_default(session, principal.workspace_id)
            where = [Environment.workspace_id == principal.workspace_id]
            total, rows = await fetch_page(session, Environment, where, [Environment.created_at, Environment.id],
                                           page=page, limit=limit)
        return Page(items=[EnvironmentInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def get(self, principal: Principal, env_id: str) -> EnvironmentInfo:
        return await self.resolve(principal.workspace_id, env_id)

    async def create(self, principal: Principal, fields: EnvironmentFields) -> EnvironmentInfo:
        row = Environment(id=new_id("env"), workspace_id=principal.workspace_id, name=fields.name or "",
                          description=fields.description or "", is_default=False, created_at=now(), updated_at=now())
        async with self.sessions() as session:
            await self._ensure_default(session, principal.workspace_id)
            session.add(row)
            await self._commit_unique(session, row.name)
            if fields.is_default:
                await self._make_default(session, principal.workspace_id, row)
        return EnvironmentInfo.of(row)

    async def update(self, principal: Principal, env_id: str, fields: EnvironmentFields) -> EnvironmentInfo:
        async with self.sessions() as session:
            row = await get_in_workspace(session, Environment, env_id, principal.workspace_id, "environment")
            if fields.name is not None:
                row.name = fields.name
            if fields.description is not None:
                row.description = fields.description
            if fields.is_default is False and row.is_default:
                raise Conflict("make another environment the default instead")
            row.updated_at = now()
            await self._commit_unique(session, row.name)
            if fields.is_default:
                await self._make_default(session, principal.workspace_id, row)
            return EnvironmentInfo.of(row)

    async def delete(self, principal: Principal, env_id: str) -> None:
        async with self.sessions() as session:
            row = await get_in_workspace(session, Environment, env_id, principal.workspace_id, "environment")
            count = await session.scalar(
                select(func.count()).select_from(Environment).where(Environment.workspace_id == principal.workspace_id)
            )
            if row.is_default:
                raise Conflict(
                    "the last environment cannot be deleted" if count == 1
                    else "the default environment cannot be deleted: make another one the default first"
                )  # fmt: skip
            await session.delete(row)  # its variables go with it (ON DELETE CASCADE)
            await session.commit()

    async def _make_default(self, session: AsyncSession, workspace_id: str, row: Environment) -> None:
        await session.execute(update(Environment).where(
            Environment.workspace_id == workspace_id, Environment.id != row.id).values(is_default=False))
        row.is_default = True
        await session.commit()

    @staticmethod
    async def _commit_unique(session: AsyncSession, name: str) -> None:
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            raise Conflict(f"an environment named {name!r} already exists") from None

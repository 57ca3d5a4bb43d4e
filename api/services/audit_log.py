"""Reading the audit log (``engine.db.audit`` writes it): filters by actor, resource, action and time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from engine.db.models import AuditRecord
from engine.db.paging import fetch_page
from engine.ids import utc
from ingest.views import Page


class AuditEntryInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    actor_user_id: str | None
    actor_token_id: str | None
    action: str  # <resource>.<verb>, e.g. agent.update
    resource_type: str
    resource_id: str | None
    changes: dict[str, Any]  # {field: {before, after}}; secrets show as "[set]"
    request_id: str | None
    at: datetime

    @classmethod
    def of(cls, row: AuditRecord) -> AuditEntryInfo:
        return cls(
            id=row.id, actor_user_id=row.actor_user_id, actor_token_id=row.actor_token_id, action=row.action,
            resource_type=row.resource_type, resource_id=row.resource_id, changes=dict(row.changes or {}),
            request_id=row.request_id, at=utc(row.at),
        )  # fmt: skip


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    actor: str | None = None  # a user id
    resource_type: str | None = None
    resource_id: str | None = None
    action: str | None = None  # exact ("agent.update") or a prefix ending in "." ("agent.")
    since: float | None = None
    until: float | None = None


class AuditLogService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def list(
        self, principal: Principal, where: AuditFilter, *, page: int, limit: int, offset: int | None = None
    ) -> Page[AuditEntryInfo]:
        """The workspace's entries, newest first."""
        clauses: list[Any] = [AuditRecord.workspace_id == principal.workspace_id]
        for column, value in (
            (AuditRecord.actor_user_id, where.actor), (AuditRecord.resource_type, where.resource_type),
            (AuditRecord.resource_id, where.resource_id),
        ):  # fmt: skip
            if value is not None:
                clauses.append(column == value)
        if where.action is not None:
            clauses.append(
                AuditRecord.action.startswith(where.action) if where.action.endswith(".")
                else AuditRecord.action == where.action
            )  # fmt: skip
        if where.since is not None:
            clauses.append(AuditRecord.at >= where.since)
        if where.until is not None:
            clauses.append(AuditRecord.at < where.until)
        async with self.sessions() as session:
            order = [AuditRecord.at.desc(), AuditRecord.id.desc()]
            total, rows = await fetch_page(session, AuditRecord, clauses, order, page=page, limit=limit, offset=offset)
        return Page(items=[AuditEntryInfo.of(r) for r in rows], page=page, limit=limit, total=total)

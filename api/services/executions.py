"""Runs as the API shows them ("executions"): list, get, events, cancel."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from engine.db.models import Run
from engine.db.paging import fetch_page
from engine.db.run_store import SqlRunStore
from engine.events import RunEvent
from engine.runs import RunManager, RunRecord
from ingest.views import Page

RUN_KINDS = ("chat", "agent", "trigger")
RUN_STATUSES = ("running", "succeeded", "failed", "cancelled")


class ExecutionService:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], runs: RunManager, run_store: SqlRunStore) -> None:
        self.sessions = sessions
        self.runs = runs
        self.store = run_store

    async def list_runs(
        self,
        principal: Principal,
        *,
        page: int,
        limit: int,
        agent_id: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        session_id: str | None = None,
    ) -> Page[RunRecord]:
        where = [Run.workspace_id == principal.workspace_id]
        for column, value in (
            (Run.agent_id, agent_id),
            (Run.status, status),
            (Run.kind, kind),
            (Run.session_id, session_id),
        ):
            if value is not None:
                where.append(column == value)
        async with self.sessions() as session:
            order = [Run.started_at.desc(), Run.id]
            total, ids = await fetch_page(session, Run.id, where, order, page=page, limit=limit)
        records = [await self.runs.get(run_id) for run_id in ids]  # live runs show their current state
        return Page(items=records, page=page, limit=limit, total=total)

    async def get(self, principal: Principal, run_id: str) -> RunRecord:
        return await self.runs.get(run_id, workspace_id=principal.workspace_id)

    async def events(self, principal: Principal, run_id: str, after_seq: int = 0) -> list[RunEvent]:
        await self.get(principal, run_id)
        return await self.store.list_events(run_id, after_seq)

    async def cancel(self, principal: Principal, run_id: str) -> bool:
        return await self.runs.cancel(run_id, workspace_id=principal.workspace_id)

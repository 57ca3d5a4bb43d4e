"""Runs as the API shows them ("executions"): list, get, events, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from engine.db.models import Run
from engine.db.paging import fetch_page
from engine.db.run_store import SqlRunStore
from engine.errors import NotFound, PermissionDenied
from engine.events import RunEvent
from engine.ids import utc, utc_or_none
from engine.runs import RunManager, RunRecord
from ingest.views import Page

RUN_KINDS = ("chat", "agent", "trigger", "prompt", "workflow")


class ExecutionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A run as the API shows it: its record, with ISO-8601 times."""

    id: str
    workspace_id: str
    kind: str
    status: str
    model: str
    input: str
    agent_id: str | None
    session_id: str | None
    trigger_id: str | None
    user_id: str | None
    environment_id: str | None
    output: str | None
    error: str | None
    error_code: str | None
    steps: list[Any]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    started_at: datetime
    finished_at: datetime | None
    latency_ms: float | None
    prompt_id: str | None = None  # the prompt its messages came from (agents bound to one, prompt runs)
    prompt_version: int | None = None  # and its version (None with a prompt id: the draft, in the playground)
    event_id: str | None = None  # the workspace event that started it (an automation's run)
    event_depth: int = 0  # automation hops that led here
    workflow_id: str | None = None  # a workflow run's workflow (its steps are in ``steps``)
    workflow_version: int | None = None

    @classmethod
    def of(cls, record: RunRecord) -> ExecutionInfo:
        values = msgspec.structs.asdict(record)
        values.update(started_at=utc(record.started_at), finished_at=utc_or_none(record.finished_at))
        return cls(**values)
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
        offset: int | None = None,
    ) -> Page[ExecutionInfo]:
        where = [Run.workspace_id == principal.workspace_id]
        if not principal.has_role("admin"):  # other members' chats are theirs (their runs of kind chat too)
            where.append(or_(Run.kind != "chat", Run.user_id.is_(None), Run.user_id == principal.user_id))
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
            total, ids = await fetch_page(session, Run.id, where, order, page=page, limit=limit, offset=offset)
        records = [ExecutionInfo.of(await self.runs.get(run_id)) for run_id in ids]  # live runs: current state
        return Page(items=records, page=page, limit=limit, total=total)

    async def _visible(self, principal: Principal, run_id: str) -> RunRecord:
        record = await self.runs.get(run_id, workspace_id=principal.workspace_id)
        if record.kind == "chat" and record.user_id not in (None, principal.user_id) and not principal.has_role(
            "admin"
        ):
            raise NotFound("run", run_id)
        return record

    async def get(self, principal: Principal, run_id: str) -> ExecutionInfo:
        return ExecutionInfo.of(await self._visible(principal, run_id))

    async def events(self, principal: Principal, run_id: str, after_seq: int = 0) -> list[RunEvent]:
        await self._visible(principal, run_id)
        return await self.store.list_events(run_id, after_seq)

    async def cancel(self, principal: Principal, run_id: str) -> bool:
        """Editors and admins cancel any run of the workspace; a viewer only the runs they started."""
        record = await self._visible(principal, run_id)
        if record.user_id != principal.user_id and not principal.has_role("editor"):
            raise PermissionDenied("a viewer can only cancel runs they started")
        return await self.runs.cancel(run_id, workspace_id=principal.workspace_id)

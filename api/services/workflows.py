"""Workflows: versioned definitions in the workspace, checked when saved, and their runs.

Every save of a definition is a new immutable version (``latest_version + 1``, with its author and note); a
definition with problems is refused as a whole, every problem listed (``engine.workflows.DefinitionError``, 422).
A run uses the latest version (or a given one), re-checked against the workspace as it is now (a prompt or an
agent may have gone), with its reusable steps (``uses``) as they are now; it runs as a run of kind ``workflow``
(``api.services.workflows_runs``). ``start`` is what automations call.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from api.services.runs import RunService
from api.services.workflows_catalog import CatalogReader
from api.services.workflows_runs import WorkflowRuns
from api.services.workflows_steps import WorkflowStepService
from engine.db.models import Workflow, WorkflowVersion, new_id, now
from engine.db.paging import fetch_page
from engine.db.run_store import SqlRunStore
from engine.db.scoped import get_in_workspace
from engine.errors import Conflict, InvalidInput, NotFound
from engine.ids import utc
from engine.workflows import DefinitionError, EventSink, Plan, Problem, WorkflowSpec, compile_workflow
from ingest.views import Page


class WorkflowInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    description: str
    latest_version: int
    definition: dict[str, Any]  # the latest version's
    step_refs: list[str]  # reusable steps it uses
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class WorkflowVersionInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    workflow_id: str
    number: int
    definition: dict[str, Any]
    step_refs: list[str]
    note: str
    author_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: WorkflowVersion) -> WorkflowVersionInfo:
        return cls(
            id=row.id, workflow_id=row.workflow_id, number=row.number, definition=dict(row.definition),
            step_refs=list(row.step_refs or []), note=row.note, author_id=row.author_id, created_at=utc(row.created_at),
        )  # fmt: skip


class ValidationReport(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /workflows/validate``: every problem, or the order the steps would run in."""

    valid: bool
    problems: list[Problem]
    order: list[str]  # a topological order of the steps (empty when invalid)


class WorkflowFields(msgspec.Struct, kw_only=True):
    name: str | None = None
    description: str | None = None
    definition: WorkflowSpec | None = None  # a new version
    note: str = ""


class WorkflowService:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], runs: RunService, run_store: SqlRunStore,
        events: EventSink | None = None,
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.runs = runs
        self.events = events
        self.catalog = CatalogReader(sessions, runs.retriever, events=events is not None)
        self.running = WorkflowRuns(sessions=sessions, runs=runs, run_store=run_store, events=events)
        self.steps = WorkflowStepService(sessions, self.catalog)  # reusable steps (/workflow-steps)

    # -- definitions -----------------------------------------------------------------------------------------------

    async def check(self, principal: Principal, spec: WorkflowSpec) -> Plan:
        """Compile ``spec`` against the workspace. Raises ``DefinitionError`` listing every problem."""
        return compile_workflow(spec, await self.catalog.catalog(principal, spec))

    async def validate(self, principal: Principal, spec: WorkflowSpec) -> ValidationReport:
        try:
            plan = await self.check(principal, spec)
        except DefinitionError as exc:
            return ValidationReport(valid=False, problems=exc.problems, order=[])
        return ValidationReport(valid=True, problems=[], order=list(plan.steps))

    async def create(self, principal: Principal, fields: WorkflowFields) -> WorkflowInfo:
        if not fields.name or fields.definition is None:
            raise InvalidInput("a workflow needs a name and a definition")
        plan = await self.check(principal, fields.definition)
        row = Workflow(
            id=new_id("wf"), workspace_id=principal.workspace_id, name=fields.name,
            description=fields.description or "", latest_version=1, created_by=principal.user_id, created_at=now(),
            updated_at=now(),
        )  # fmt: skip
        version = self._version(principal, row, 1, fields.definition, plan, fields.note)
        async with self.sessions() as session:
            session.add(row)
            await self._commit(session, row.name, flush_first=True)
            session.add(version)
            await session.commit()
        return self._info(row, version)

    async def list(self, principal: Principal, *, page: int, limit: int) -> Page[WorkflowInfo]:
        where = [Workflow.workspace_id == principal.workspace_id]
        async with self.sessions() as session:
            total, rows = await fetch_page(session, Workflow, where, [Workflow.name, Workflow.id], page=page,
                                           limit=limit)  # fmt: skip
            items = [self._info(row, await self._version_row(session, row.id, row.latest_version)) for row in rows]
        return Page(items=items, page=page, limit=limit, total=total)

    async def get(self, principal: Principal, workflow_id: str) -> WorkflowInfo:
        async with self.sessions() as session:
            row = await get_in_workspace(session, Workflow, workflow_id, principal.workspace_id, "workflow")
            return self._info(row, await self._version_row(session, row.id, row.latest_version))

    async def update(self, principal: Principal, workflow_id: str, fields: WorkflowFields) -> WorkflowInfo:
        """Rename or describe it; a ``definition`` is saved as the next version."""
        plan = await self.check(principal, fields.definition) if fields.definition is not None else None
        async with self.sessions() as session:
            row = await get_in_workspace(session, Workflow, workflow_id, principal.workspace_id, "workflow")
            if fields.name is not None:
                row.name = fields.name
            if fields.description is not None:
                row.description = fields.description
            if plan is not None and fields.definition is not None:
                row.latest_version += 1
                session.add(self._version(principal, row, row.latest_version, fields.definition, plan, fields.note))
            row.updated_at = now()
            await self._commit(session, row.name)
            return self._info(row, await self._version_row(session, row.id, row.latest_version))

    async def delete(self, principal: Principal, workflow_id: str) -> None:
        """Its versions go with it; runs keep their records (and a running one its steps, to finish)."""
        async with self.sessions() as session:
            row = await get_in_workspace(session, Workflow, workflow_id, principal.workspace_id, "workflow")
            await session.delete(row)
            await session.commit()

    async def versions(self, principal: Principal, workflow_id: str, *, page: int,
                       limit: int) -> Page[WorkflowVersionInfo]:  # fmt: skip
        async with self.sessions() as session:
            await get_in_workspace(session, Workflow, workflow_id, principal.workspace_id, "workflow")
            total, rows = await fetch_page(session, WorkflowVersion, [WorkflowVersion.workflow_id == workflow_id],
                                           [WorkflowVersion.number.desc()], page=page, limit=limit)  # fmt: skip
        return Page(items=[WorkflowVersionInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def version(self, principal: Principal, workflow_id: str, number: int) -> WorkflowVersionInfo:
        async with self.sessions() as session:
            await get_in_workspace(session, Workflow, workflow_id, principal.workspace_id, "workflow")
            return WorkflowVersionInfo.of(await self._version_row(session, workflow_id, number))

    # -- runs ------------------------------------------------------------------------------------------------------

    async def start(
        self, principal: Principal, workflow_id: str, input: Mapping[str, Any], *, event_id: str | None = None,
        event_depth: int = 0, version: int | None = None, environment: str | None = None,
    ) -> str:  # fmt: skip
        """Start a run of the workflow (its latest version, or ``version``) with ``input``; returns the run id.

        Raises ``NotFound`` (workflow, version), ``InvalidInput`` (input against ``input_schema``) and
        ``DefinitionError`` (the workspace changed since the version was saved: every problem listed)."""
        async with self.sessions() as session:
            row = await get_in_workspace(session, Workflow, workflow_id, principal.workspace_id, "workflow")
            saved = await self._version_row(session, row.id, version or row.latest_version)
        spec = msgspec.convert(saved.definition, WorkflowSpec)
        plan = await self.check(principal, spec)
        return await self.running.start(
            principal, plan, workflow_id=row.id, version=saved.number, name=row.name, data=input,
            environment=environment, event_id=event_id, event_depth=event_depth,
        )  # fmt: skip

    async def resume_unfinished(self) -> int:
        return await self.running.resume_unfinished()

    # -- internals -------------------------------------------------------------------------------------------------

    @staticmethod
    def _version(
        principal: Principal, row: Workflow, number: int, spec: WorkflowSpec, plan: Plan, note: str
    ) -> WorkflowVersion:
        return WorkflowVersion(
            id=new_id("wfv"), workflow_id=row.id, workspace_id=row.workspace_id, number=number,
            definition=msgspec.to_builtins(spec), step_refs=list(plan.step_refs), note=note,
            author_id=principal.user_id, created_at=now(),
        )  # fmt: skip

    @staticmethod
    async def _version_row(session: AsyncSession, workflow_id: str, number: int) -> WorkflowVersion:
        row = await session.scalar(select(WorkflowVersion).where(
            WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.number == number))  # fmt: skip
        if row is None:
            raise NotFound("workflow version", str(number))
        return row

    @staticmethod
    def _info(row: Workflow, version: WorkflowVersion) -> WorkflowInfo:
        return WorkflowInfo(
            id=row.id, name=row.name, description=row.description, latest_version=row.latest_version,
            definition=dict(version.definition), step_refs=builtins.list(version.step_refs or []),
            created_by=row.created_by, created_at=utc(row.created_at), updated_at=utc(row.updated_at),
        )  # fmt: skip

    @staticmethod
    async def _commit(session: AsyncSession, name: str, *, flush_first: bool = False) -> None:
        try:
            await (session.flush() if flush_first else session.commit())
        except IntegrityError:
            await session.rollback()
            raise Conflict(f"a workflow named {name!r} already exists") from None

"""Reusable workflow steps (seed 003's workflow entities): a step saved once and named by ``uses`` in workflows.

A reusable step holds a kind, the kind's fields (not ``id`` or ``after``, which each workflow gives) and seed 003's
``entity_type`` (event, prompt, action or result). A workflow step ``{"id": "s", "uses": "<id>", …}`` starts from
those fields; its own override them. Runs take the reusable step as it is when they start, so an edit reaches
every workflow using it: an edit that would break the latest version of one is refused (every problem listed),
and a step still used by a latest version cannot be deleted. ``usage`` lists the workflows and versions using it.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from api.services.workflows_catalog import CatalogReader, step_fields
from engine.db.models import Workflow, WorkflowStepDef, WorkflowVersion, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import Conflict, InvalidInput
from engine.ids import utc
from engine.workflows import DefinitionError, Problem, WorkflowSpec, compile_workflow
from engine.workflows.definition import STEP_KINDS
from engine.workflows.validation import check_reusable
from ingest.views import Page

ENTITY_TYPES = ("event", "prompt", "action", "result")


class StepUsage(msgspec.Struct, frozen=True, kw_only=True):
    workflow_id: str
    workflow_name: str
    versions: list[int]  # versions that use it, newest first
    latest: bool  # the latest version uses it (then an edit is checked against it, and it cannot be deleted)


class WorkflowStepInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    description: str
    entity_type: str
    kind: str
    config: dict[str, Any]
    usage: list[StepUsage]
    usage_count: int  # workflows using it
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class WorkflowStepFields(msgspec.Struct, kw_only=True):
    name: str | None = None
    description: str | None = None
    entity_type: str | None = None
    kind: str | None = None
    config: dict[str, Any] | None = None


class WorkflowStepService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], catalog: CatalogReader) -> None:
        self.sessions = sessions
        self.catalog = catalog

    async def create(self, principal: Principal, fields: WorkflowStepFields) -> WorkflowStepInfo:
        if not fields.name or not fields.kind:
            raise InvalidInput("a workflow step needs a name and a kind")
        row = WorkflowStepDef(
            id=new_id("wfs"), workspace_id=principal.workspace_id, name=fields.name, description="",
            entity_type="action", kind=fields.kind, config={}, created_by=principal.user_id, created_at=now(),
            updated_at=now(),
        )  # fmt: skip
        self._apply(row, fields)
        async with self.sessions() as session:
            session.add(row)
            await self._commit(session, row.name)
        return WorkflowStepInfo(**self._values(row), usage=[], usage_count=0)

    async def list(self, principal: Principal, *, page: int, limit: int) -> Page[WorkflowStepInfo]:
        where = [WorkflowStepDef.workspace_id == principal.workspace_id]
        async with self.sessions() as session:
            total, rows = await fetch_page(session, WorkflowStepDef, where, [WorkflowStepDef.name, WorkflowStepDef.id],
                                           page=page, limit=limit)  # fmt: skip
            usages = await self._usage(session, principal.workspace_id, [r.id for r in rows])
        items = [self._info(row, usages.get(row.id, [])) for row in rows]
        return Page(items=items, page=page, limit=limit, total=total)

    async def get(self, principal: Principal, step_id: str) -> WorkflowStepInfo:
        async with self.sessions() as session:
            row = await self._row(session, principal, step_id)
            usage = await self._usage(session, principal.workspace_id, [row.id])
        return self._info(row, usage.get(row.id, []))

    async def update(self, principal: Principal, step_id: str, fields: WorkflowStepFields) -> WorkflowStepInfo:
        async with self.sessions() as session:
            row = await self._row(session, principal, step_id)
            self._apply(row, fields)
            usage = (await self._usage(session, principal.workspace_id, [row.id])).get(row.id, [])
            await self._check_dependents(session, principal, row, usage)
            row.updated_at = now()
            await self._commit(session, row.name)
        return self._info(row, usage)

    async def delete(self, principal: Principal, step_id: str) -> None:
        async with self.sessions() as session:
            row = await self._row(session, principal, step_id)
            usage = (await self._usage(session, principal.workspace_id, [row.id])).get(row.id, [])
            used = [u.workflow_name for u in usage if u.latest]
            if used:
                raise Conflict(f"workflow step {row.name!r} is used by the latest version of "
                               f"{', '.join(repr(n) for n in used)}: change those first")  # fmt: skip
            await session.delete(row)
            await session.commit()

    # -- internals -------------------------------------------------------------------------------------------------

    @staticmethod
    def _apply(row: WorkflowStepDef, fields: WorkflowStepFields) -> None:
        for name in ("name", "description", "entity_type", "kind", "config"):
            value = getattr(fields, name)
            if value is not None:
                setattr(row, name, value)
        if row.kind not in STEP_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(STEP_KINDS)}")
        if row.entity_type not in ENTITY_TYPES:
            raise InvalidInput(f"entity_type must be one of {', '.join(ENTITY_TYPES)}")
        problems = check_reusable(row.kind, row.config or {})
        if problems:
            raise DefinitionError(problems)

    async def _check_dependents(
        self, session: AsyncSession, principal: Principal, row: WorkflowStepDef, usage: Sequence[StepUsage]
    ) -> None:
        """Every workflow whose latest version uses the step must still check with the step as edited."""
        problems: list[Problem] = []
        for use in usage:
            if not use.latest:
                continue
            version = await session.scalar(select(WorkflowVersion).where(
                WorkflowVersion.workflow_id == use.workflow_id, WorkflowVersion.number == use.versions[0]))  # fmt: skip
            if version is None:
                continue
            spec = msgspec.convert(version.definition, WorkflowSpec)
            catalog = await self.catalog.catalog(principal, spec, overrides={row.id: step_fields(row)})
            try:
                compile_workflow(spec, catalog)
            except DefinitionError as exc:
                where = f"workflow {use.workflow_name!r} v{version.number}"
                problems += [Problem(step=p.step, field=p.field, message=f"{where}: {p.message}") for p in exc.problems]
        if problems:
            raise DefinitionError(problems)

    @staticmethod
    async def _usage(
        session: AsyncSession, workspace_id: str, step_ids: Sequence[str]
    ) -> dict[str, builtins.list[StepUsage]]:
        """Which workflows (and versions) use each step: read from the versions' ``step_refs``."""
        if not step_ids:
            return {}
        rows = await session.execute(
            select(WorkflowVersion.workflow_id, WorkflowVersion.number, WorkflowVersion.step_refs, Workflow.name,
                   Workflow.latest_version)
            .join(Workflow, Workflow.id == WorkflowVersion.workflow_id)
            .where(WorkflowVersion.workspace_id == workspace_id)
            .order_by(Workflow.name, Workflow.id, WorkflowVersion.number.desc())
        )  # fmt: skip
        found: dict[str, dict[str, StepUsage]] = {sid: {} for sid in step_ids}
        for workflow_id, number, refs, name, latest in rows.tuples():
            for sid in set(refs or ()) & found.keys():
                use = found[sid].get(workflow_id)
                versions = [*use.versions, number] if use else [number]
                found[sid][workflow_id] = StepUsage(workflow_id=workflow_id, workflow_name=name, versions=versions,
                                                    latest=(use.latest if use else False) or number == latest)
        return {sid: builtins.list(uses.values()) for sid, uses in found.items()}

    @staticmethod
    async def _row(session: AsyncSession, principal: Principal, step_id: str) -> WorkflowStepDef:
        return await get_in_workspace(session, WorkflowStepDef, step_id, principal.workspace_id, "workflow step")

    @staticmethod
    def _values(row: WorkflowStepDef) -> dict[str, Any]:
        return {
            "id": row.id, "name": row.name, "description": row.description, "entity_type": row.entity_type,
            "kind": row.kind, "config": dict(row.config or {}), "created_by": row.created_by,
            "created_at": utc(row.created_at), "updated_at": utc(row.updated_at),
        }  # fmt: skip

    def _info(self, row: WorkflowStepDef, usage: builtins.list[StepUsage]) -> WorkflowStepInfo:
        return WorkflowStepInfo(**self._values(row), usage=usage, usage_count=len(usage))

    @staticmethod
    async def _commit(session: AsyncSession, name: str) -> None:
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            raise Conflict(f"a workflow step named {name!r} already exists") from None

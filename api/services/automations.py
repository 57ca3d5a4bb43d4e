"""Automations: when an event of a matching type (and condition) is stored, start an agent run or a workflow.

A rule names event type patterns (``file.*``, ``invoice.paid``), an optional condition in the workflows' safe
expression language (``engine.workflows.expressions``, never ``eval``) over the event as ``input``
(``input.payload.amount > 100 and input.source == "api"``), and what to start: an agent, with an input text
rendered from the event (``"Summarise {{ input.payload.name }}"``), or a workflow, with an input object (a JSON
template: ``{"file": "{{ input.payload.file_id }}"}``). The run records the event (``event_id``) and its depth.

Rules run in the background, off the request path: the event log's writer hands each stored batch to a queue
drained by one task, in order. Loops are stopped by depth: an event a run emits carries the run's depth (the
causing event's depth + 1), and an event at ``max_depth`` or deeper starts nothing; ``automation.loop_stopped``
says so instead. Ragline's ``automation.*`` events never start automations (a rule failing on its own failure
events would never stop). An automation acts as itself (``automation:<id>``, editor rights in its workspace).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.events import EventService
from api.services.identity import Principal
from api.services.runs import RunService, RunStart
from engine.db.models import Agent, Automation, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import Conflict, InvalidInput, NotFound
from engine.ids import utc, utc_or_none
from engine.workflows.expressions import ExpressionError, evaluate, parse
from engine.workflows.templates import compile_template, render
from engine.workspace_events import WorkspaceEvent, check_pattern, matches_any
from ingest.views import Page

log = logging.getLogger("ragline.automations")

RULES_TTL_S = 5.0  # rules changed by another process are seen within this
MAX_PATTERNS = 20
MAX_INPUT = 100_000
DEFAULT_AGENT_INPUT = "{{ input.payload }}"


class WorkflowStarter(Protocol):
    """What automations need of workflows (``api.services.workflows.WorkflowService``)."""

    async def start(
        self, principal: Principal, workflow_id: str, input: dict[str, Any], *, event_id: str | None = None,
        event_depth: int = 0,
    ) -> Any: ...  # fmt: skip


class AutomationInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    description: str
    event_types: list[str]
    condition: str | None
    action: str  # agent | workflow
    agent_id: str | None
    workflow_id: str | None
    input_template: str | None  # an agent's input text (a template)
    input_mapping: Any  # a workflow's input (a JSON template)
    enabled: bool
    fired: int
    last_fired_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Automation) -> AutomationInfo:
        return cls(
            id=row.id, name=row.name, description=row.description, event_types=list(row.event_types or []),
            condition=row.condition, action=row.action, agent_id=row.agent_id, workflow_id=row.workflow_id,
            input_template=row.input_template if row.action == "agent" else None,
            input_mapping=row.input_mapping if row.action == "workflow" else None,
            enabled=row.enabled, fired=row.fired, last_fired_at=utc_or_none(row.last_fired_at),
            last_error=row.last_error, created_at=utc(row.created_at), updated_at=utc(row.updated_at),
        )  # fmt: skip


class AutomationFields(msgspec.Struct, kw_only=True):
    """Editable fields (``None`` keeps one). ``condition`` ``""`` removes it."""

    name: str | None = None
    description: str | None = None
    event_types: list[str] | None = None
    condition: str | None = None
    action: str | None = None
    agent_id: str | None = None
    workflow_id: str | None = None
    input_template: str | None = None
    input_mapping: Any = None
    enabled: bool | None = None


def automation_principal(row: Automation) -> Principal:
    """Who an automation's runs act as: the automation itself, inside its workspace."""
    return Principal(
        user_id=f"automation:{row.id}", token_id=f"automation:{row.id}", workspace_id=row.workspace_id,
        role="editor", kb_ids=None,
    )  # fmt: skip


def _compiled(value: Any, what: str) -> Any:
    problems: list[str] = []
    template = compile_template(value, problems, what)
    if problems:
        raise InvalidInput("; ".join(problems))
    return template


class AutomationService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], events: EventService, runs: RunService, *,
        max_depth: int = 5, workflows: WorkflowStarter | None = None,
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.events = events
        self.runs = runs
        self.max_depth = max_depth
        self.workflows = workflows
        self._rules: dict[str, tuple[float, builtins.list[Automation]]] = {}
        self._rules_changed = 0  # bumped by every change here: a read that overlapped one is not cached
        self._queue: asyncio.Queue[WorkspaceEvent] | None = None
        self._task: asyncio.Task[None] | None = None
        events.listen(self._on_events)

    # -- definitions -----------------------------------------------------------------------------

    async def _check(self, principal: Principal, row: Automation, session: AsyncSession) -> None:
        if not row.event_types or len(row.event_types) > MAX_PATTERNS:
            raise InvalidInput(f"event_types: name 1 to {MAX_PATTERNS} event type patterns (file.*, invoice.paid)")
        for pattern in row.event_types:
            check_pattern(pattern)
        if row.condition:
            try:
                parse(row.condition)
            except ExpressionError as exc:
                raise InvalidInput(f"condition: {exc.message}") from None
        if row.action == "agent":
            if not row.agent_id:
                raise InvalidInput("an agent automation needs agent_id")
            try:
                await get_in_workspace(session, Agent, row.agent_id, principal.workspace_id, "agent")
            except NotFound:
                raise InvalidInput("agent_id names no agent of this workspace") from None
            _compiled(row.input_template, "input_template")
        elif row.action == "workflow":
            await self._check_workflow(principal, row)
        else:
            raise InvalidInput("action is agent or workflow")

    async def _check_workflow(self, principal: Principal, row: Automation) -> None:
        if not row.workflow_id:
            raise InvalidInput("a workflow automation needs workflow_id")
        if self.workflows is None:
            raise InvalidInput("workflows are not available on this server")
        getter = getattr(self.workflows, "get", None)
        if getter is not None:
            try:
                await getter(principal, row.workflow_id)
            except NotFound:
                raise InvalidInput("workflow_id names no workflow of this workspace") from None
        _compiled(row.input_mapping, "input_mapping")

    def _apply(self, row: Automation, fields: AutomationFields) -> None:
        for key in ("name", "description", "event_types", "action", "agent_id", "workflow_id", "enabled"):
            value = getattr(fields, key)
            if value is not None:
                setattr(row, key, value)
        if fields.condition is not None:
            row.condition = fields.condition if fields.condition.strip() else None
        if fields.input_template is not None:
            row.input_template = fields.input_template
        if fields.input_mapping is not None:
            if len(json.dumps(fields.input_mapping)) > MAX_INPUT:
                raise InvalidInput("input_mapping is too large")
            row.input_mapping = fields.input_mapping

    async def create(self, principal: Principal, fields: AutomationFields) -> AutomationInfo:
        if not fields.name or not fields.action:
            raise InvalidInput("an automation needs a name, event_types and an action")
        row = Automation(
            id=new_id("auto"), workspace_id=principal.workspace_id, name=fields.name, description="", event_types=[],
            action=fields.action, input_template=DEFAULT_AGENT_INPUT, enabled=True, created_by=principal.user_id,
            fired=0, created_at=now(), updated_at=now(),
        )  # fmt: skip
        self._apply(row, fields)
        async with self.sessions() as session:
            await self._check(principal, row, session)
            session.add(row)
            await self._commit(session, row)
        return AutomationInfo.of(row)

    async def list(self, principal: Principal, *, page: int, limit: int) -> Page[AutomationInfo]:
        async with self.sessions() as session:
            total, rows = await fetch_page(
                session, Automation, [Automation.workspace_id == principal.workspace_id],
                [Automation.created_at.desc(), Automation.id], page=page, limit=limit,
            )  # fmt: skip
        return Page(items=[AutomationInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def get(self, principal: Principal, automation_id: str) -> AutomationInfo:
        async with self.sessions() as session:
            return AutomationInfo.of(await self._row(session, principal, automation_id))

    async def update(self, principal: Principal, automation_id: str, fields: AutomationFields) -> AutomationInfo:
        async with self.sessions() as session:
            row = await self._row(session, principal, automation_id)
            self._apply(row, fields)
            await self._check(principal, row, session)
            row.updated_at = now()
            await self._commit(session, row)
            return AutomationInfo.of(row)

    async def delete(self, principal: Principal, automation_id: str) -> None:
        async with self.sessions() as session:
            await session.delete(await self._row(session, principal, automation_id))
            await session.commit()
        self._forget_rules(principal.workspace_id)

    async def _row(self, session: AsyncSession, principal: Principal, automation_id: str) -> Automation:
        return await get_in_workspace(session, Automation, automation_id, principal.workspace_id, "automation")

    async def _commit(self, session: AsyncSession, row: Automation) -> None:
        try:
            await session.commit()
        except IntegrityError:
            raise Conflict(f"an automation named {row.name!r} already exists") from None
        self._forget_rules(row.workspace_id)

    def _forget_rules(self, workspace_id: str) -> None:
        self._rules_changed += 1
        self._rules.pop(workspace_id, None)

    # -- reacting to events ----------------------------------------------------------------------

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="automations")

    async def stop(self) -> None:
        task, self._task, self._queue = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_events(self, batch: Sequence[WorkspaceEvent]) -> None:
        if self._queue is None:
            return
        for event in batch:
            if not event.type.startswith("automation."):
                self._queue.put_nowait(event)

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            event = await queue.get()
            try:
                await self.dispatch(event)
            except Exception:
                log.exception("automations for event %s failed", event.id)

    async def _rules_of(self, workspace_id: str) -> builtins.list[Automation]:
        cached = self._rules.get(workspace_id)
        if cached is not None and time.monotonic() - cached[0] < RULES_TTL_S:
            return cached[1]
        changed = self._rules_changed
        async with self.sessions() as session:
            rows = list(await session.scalars(
                select(Automation).where(Automation.workspace_id == workspace_id, Automation.enabled.is_(True))
            ))  # fmt: skip
            session.expunge_all()
        # a rule saved while we read may be missing from ``rows``: use them for this event, cache them only if not
        if changed == self._rules_changed:
            self._rules[workspace_id] = (time.monotonic(), rows)
        return rows

    async def dispatch(self, event: WorkspaceEvent) -> builtins.list[str]:
        """Start what the event's matching rules name; returns the ids started (runs, workflow runs)."""
        started: builtins.list[str] = []
        scope = {"input": event.as_dict(), "steps": {}}
        for rule in await self._rules_of(event.workspace_id):
            if not matches_any(rule.event_types, event.type):
                continue
            try:
                if rule.condition and not evaluate(parse(rule.condition), scope):
                    continue
            except ExpressionError as exc:
                await self._fired(rule, event, None, f"condition: {exc.message}")
                continue
            if event.depth >= self.max_depth:
                self.events.emit_nowait(
                    event.workspace_id, "automation.loop_stopped",
                    {"automation_id": rule.id, "name": rule.name, "event_id": event.id, "event_type": event.type,
                     "depth": event.depth, "max_depth": self.max_depth},
                    source=f"automation:{rule.id}", depth=event.depth, run_id=event.run_id,
                )  # fmt: skip
                await self._fired(rule, event, None, f"loop stopped at depth {event.depth}", report=False)
                continue
            try:
                ident = await self._start(rule, event, scope)
            except Exception as exc:  # refused (agent inactive, workspace busy, input invalid …): said, not raised
                await self._fired(rule, event, None, str(getattr(exc, "message", None) or exc)[:1000])
                continue
            started.append(ident)
            await self._fired(rule, event, ident, None)
        return started

    async def _start(self, rule: Automation, event: WorkspaceEvent, scope: dict[str, Any]) -> str:
        principal = automation_principal(rule)
        if rule.action == "workflow":
            if self.workflows is None:
                raise InvalidInput("workflows are not available on this server")
            value = render(_compiled(rule.input_mapping, "input_mapping"), scope)
            data = value if isinstance(value, dict) else {"input": value}
            result = await self.workflows.start(
                principal, rule.workflow_id or "", data, event_id=event.id, event_depth=event.depth + 1
            )
            return str(getattr(result, "run_id", None) or getattr(result, "id", None) or result)
        text = render(_compiled(rule.input_template or DEFAULT_AGENT_INPUT, "input_template"), scope)
        text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
        start = RunStart(
            user_input=text[:MAX_INPUT] or f"Event {event.type}", kind="agent", agent_id=rule.agent_id,
            event_id=event.id, event_depth=event.depth + 1,
        )  # fmt: skip
        return await self.runs.start(principal, start)

    async def _fired(
        self, rule: Automation, event: WorkspaceEvent, started: str | None, error: str | None, *, report: bool = True
    ) -> None:
        """Count the firing on the rule; a failure is logged and, if ``report``, an ``automation.failed`` event."""
        if error is not None:
            log.info("automation %s on event %s: %s", rule.id, event.id, error)
        if error is not None and report:
            self.events.emit_nowait(
                event.workspace_id, "automation.failed",
                {"automation_id": rule.id, "name": rule.name, "event_id": event.id, "error": error},
                source=f"automation:{rule.id}", depth=event.depth, run_id=event.run_id,
            )  # fmt: skip
        values: dict[str, Any] = {"last_fired_at": now(), "last_error": error}
        if started is not None:
            values["fired"] = Automation.fired + 1
        async with self.sessions() as session:
            await session.execute(update(Automation).where(Automation.id == rule.id).values(**values))
            await session.commit()

"""The workspace event log: emit (one writer per process, group commit, in id order), query, and fan-out.

``emit`` gives the event its id (``engine.workspace_events.EventIds``: sortable, strictly increasing in this
process) and hands it to the writer task, which stores whatever is queued in one transaction and then tells the
listeners (the live feed, automations, subscriptions) in id order, after the commit: a listener never sees an
event that is not stored, and a client that resumes from the log after an id misses nothing this process wrote.
``emit`` waits for the commit; ``emit_nowait`` (Ragline's own events, from hooks on hot paths) does not, and never
fails its caller: a failed write is logged. Listeners must not block (they queue work of their own).

Several processes (PostgreSQL) share the log: each tells its own listeners about its own events, so an
automation or subscription acts once per event; a live client sees its process's events live and everything
else when it resumes from the log (``after``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from engine.db.audit import AuditScope, audit_scope
from engine.db.models import WorkspaceEventRow
from engine.errors import InvalidInput
from engine.ids import now, utc
from engine.workspace_events import (
    MAX_PAYLOAD_BYTES,
    EventIds,
    WorkspaceEvent,
    check_pattern,
    check_type,
    is_event_id,
)

log = logging.getLogger("ragline.events")

Listener = Callable[[Sequence[WorkspaceEvent]], None]
BATCH_MAX = 500  # events per transaction
STOP_TIMEOUT_S = 10.0
MAX_SOURCE = 80


class EventInfo(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the API shows it (``ts`` as ISO-8601 UTC)."""

    id: str
    workspace_id: str
    type: str
    payload: dict[str, Any]
    source: str
    ts: datetime
    depth: int
    run_id: str | None

    @classmethod
    def of(cls, event: WorkspaceEvent) -> EventInfo:
        return cls(
            id=event.id, workspace_id=event.workspace_id, type=event.type, payload=event.payload,
            source=event.source, ts=utc(event.ts), depth=event.depth, run_id=event.run_id,
        )  # fmt: skip


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[EventInfo]
    total: int
    next_cursor: str | None  # pass as ``after`` (ascending) or ``before`` (newest first) for the next page


@dataclass(frozen=True)
class EventQuery:
    types: tuple[str, ...] = ()  # patterns: "file.*", "invoice.paid"; a "*" only as the last word here
    source: str | None = None  # exact, or a prefix ending in "*" ("run:*")
    since: float | None = None
    until: float | None = None
    after: str | None = None  # ascending from this id (exclusive): the resume cursor
    before: str | None = None  # newest first, older than this id
    page: int = 1
    limit: int = 50


@dataclass
class _Pending:
    event: WorkspaceEvent
    done: asyncio.Future[None] | None
    scope: AuditScope | None  # a member's emit is audited like any write; Ragline's own events are not


def to_event(row: WorkspaceEventRow) -> WorkspaceEvent:
    return WorkspaceEvent(
        id=row.id, workspace_id=row.workspace_id, type=row.type, payload=dict(row.payload or {}), source=row.source,
        ts=row.ts, depth=row.depth, run_id=row.run_id,
    )  # fmt: skip


def _drain(queue: asyncio.Queue[_Pending | None]) -> list[_Pending | None]:
    items: list[_Pending | None] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped[:-1] + "%" if escaped.endswith("*") else escaped


class EventService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, ids: EventIds | None = None) -> None:
        self.sessions = sessions
        self.ids = ids or EventIds()
        self._listeners: list[Listener] = []
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._direct: set[asyncio.Task[None]] = set()  # writes made while no writer runs (CLI, tools)

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` with every batch of events this process stored, in id order (must not block)."""
        self._listeners.append(listener)

    # -- the writer ------------------------------------------------------------------------------

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="workspace events writer")

    async def stop(self) -> None:
        """Store what is queued, then stop."""
        queue, task, self._queue = self._queue, self._task, None
        if queue is None or task is None:
            return
        queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # what was queued behind the stop (or left by a cancelled writer): stored now, so that no emitter waits
        # forever on a future nobody resolves
        left = [item for item in _drain(queue) if item is not None]
        if left:
            await self._store(left)
        for direct in list(self._direct):
            with contextlib.suppress(Exception):
                await direct

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            first = await queue.get()
            batch = [first]
            while len(batch) < BATCH_MAX and not queue.empty():
                batch.append(queue.get_nowait())
            pending = [p for p in batch if p is not None]
            if pending:
                try:
                    await self._store(pending)
                except asyncio.CancelledError:  # stopped mid-write: the emitters hear so instead of waiting forever
                    for item in pending:
                        if item.done is not None and not item.done.done():
                            item.done.set_exception(RuntimeError("the event log stopped before storing the event"))
                    raise
            if None in batch:
                return

    async def _store(self, batch: list[_Pending]) -> None:
        try:
            await self._write([(p.event, p.scope) for p in batch])
        except Exception as exc:
            log.exception("could not store %d workspace event(s)", len(batch))
            for item in batch:
                if item.done is not None and not item.done.done():
                    item.done.set_exception(exc)
            return
        for item in batch:
            if item.done is not None and not item.done.done():
                item.done.set_result(None)
        self._notify([p.event for p in batch])

    async def _write(self, items: Sequence[tuple[WorkspaceEvent, AuditScope | None]]) -> None:
        """One transaction (one commit) for the whole batch; a member's emit is flushed under its request's audit
        scope, so that it gets its audit entry in the same transaction (Ragline's own events are not audited)."""
        async with self.sessions() as session:
            index = 0
            while index < len(items):
                scope = items[index][1]
                group = [items[index][0]]
                index += 1
                while index < len(items) and scope is None and items[index][1] is None:
                    group.append(items[index][0])
                    index += 1
                token = audit_scope.set(scope)
                try:
                    session.add_all([
                        WorkspaceEventRow(
                            id=e.id, workspace_id=e.workspace_id, type=e.type, source=e.source, payload=e.payload,
                            ts=e.ts, depth=e.depth, run_id=e.run_id,
                        ) for e in group
                    ])  # fmt: skip
                    await session.flush()
                finally:
                    audit_scope.reset(token)
            await session.commit()

    def _notify(self, events: Sequence[WorkspaceEvent]) -> None:
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:
                log.exception("event listener %r failed", listener)

    # -- emitting --------------------------------------------------------------------------------

    def make(
        self, workspace_id: str, type: str, payload: dict[str, Any], *, source: str, depth: int = 0,
        run_id: str | None = None,
    ) -> WorkspaceEvent:  # fmt: skip
        check_type(type)
        return WorkspaceEvent(
            id=self.ids.next(), workspace_id=workspace_id, type=type, payload=payload, source=source[:MAX_SOURCE],
            ts=now(), depth=max(0, depth), run_id=run_id,
        )  # fmt: skip

    async def emit(
        self, workspace_id: str, type: str, payload: dict[str, Any], *, source: str, depth: int = 0,
        run_id: str | None = None,
    ) -> WorkspaceEvent:  # fmt: skip
        """Store one event and return it once committed (listeners are told right after). Raises on a failed
        write (the database error) or a malformed type (``InvalidInput``)."""
        event = self.make(workspace_id, type, payload, source=source, depth=depth, run_id=run_id)
        await self._submit(event, None)
        return event

    def emit_nowait(
        self, workspace_id: str, type: str, payload: dict[str, Any], *, source: str = "system", depth: int = 0,
        run_id: str | None = None,
    ) -> WorkspaceEvent | None:  # fmt: skip
        """Queue one of Ragline's own events and return at once; never raises (a failure is logged)."""
        try:
            event = self.make(workspace_id, type, payload, source=source, depth=depth, run_id=run_id)
            if self._queue is not None:
                self._queue.put_nowait(_Pending(event, None, None))
            else:
                task = asyncio.get_running_loop().create_task(self._write_direct(event))
                self._direct.add(task)
                task.add_done_callback(self._direct.discard)
            return event
        except Exception:
            log.exception("could not emit %s event", type)
            return None

    async def _write_direct(self, event: WorkspaceEvent) -> None:
        try:
            await self._write([(event, None)])
            self._notify([event])
        except Exception:
            log.exception("could not store the %s event", event.type)

    async def _submit(self, event: WorkspaceEvent, scope: AuditScope | None) -> None:
        if self._queue is None:
            await self._write([(event, scope)])
            self._notify([event])
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(event, done, scope))
        await done

    async def emit_user(self, principal: Principal, type: str, payload: dict[str, Any]) -> EventInfo:
        """A member's event (``POST /events``): a type of their own (Ragline's first words are reserved), a JSON
        object of at most 64 KiB; audited like any write."""
        check_type(type, user=True)
        if len(msgspec.json.encode(payload)) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(f"the payload is larger than {MAX_PAYLOAD_BYTES // 1024} KiB")
        event = self.make(principal.workspace_id, type, payload, source="api")
        await self._submit(event, audit_scope.get())
        return EventInfo.of(event)

    # -- reading ---------------------------------------------------------------------------------

    def _where(self, workspace_id: str, query: EventQuery) -> list[Any]:
        where: list[Any] = [WorkspaceEventRow.workspace_id == workspace_id]
        if query.types:
            tests = []
            for pattern in query.types:
                check_pattern(pattern)
                if "*" in pattern[:-1]:
                    raise InvalidInput(f"type {pattern!r}: in a query, '*' may only be the last word (file.*)")
                tests.append(
                    WorkspaceEventRow.type.like(_like(pattern), escape="\\")
                    if pattern.endswith("*")
                    else WorkspaceEventRow.type == pattern
                )
            where.append(or_(*tests))
        if query.source:
            if query.source.endswith("*"):
                where.append(WorkspaceEventRow.source.like(_like(query.source), escape="\\"))
            else:
                where.append(WorkspaceEventRow.source == query.source)
        if query.since is not None:
            where.append(WorkspaceEventRow.ts >= query.since - 1e-6)  # shown times are rounded to microseconds
        if query.until is not None:
            where.append(WorkspaceEventRow.ts < query.until - 1e-6)  # an event shown at ``until`` is not before it
        for cursor in (query.after, query.before):
            if cursor is not None and not is_event_id(cursor):
                raise InvalidInput(f"{cursor!r} is not an event id (evt_…)")
        if query.after is not None:
            where.append(WorkspaceEventRow.id > query.after)
        if query.before is not None:
            where.append(WorkspaceEventRow.id < query.before)
        return where

    async def query(self, principal: Principal, query: EventQuery) -> EventPage:
        """Events of the caller's workspace: ascending from ``after``, else newest first (``before``, pages)."""
        where = self._where(principal.workspace_id, query)
        ascending = query.after is not None
        order = WorkspaceEventRow.id.asc() if ascending else WorkspaceEventRow.id.desc()
        offset = 0 if query.after is not None or query.before is not None else (query.page - 1) * query.limit
        stmt: Select[Any] = select(WorkspaceEventRow).where(*where).order_by(order).offset(offset)
        async with self.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(WorkspaceEventRow).where(*where)) or 0
            rows = list(await session.scalars(stmt.limit(query.limit + 1)))
        more = len(rows) > query.limit
        items = [EventInfo.of(to_event(r)) for r in rows[: query.limit]]
        return EventPage(items=items, total=int(total), next_cursor=items[-1].id if more and items else None)

    async def after(self, workspace_id: str, cursor: str, *, limit: int = 500) -> list[WorkspaceEvent]:
        """Up to ``limit`` events of the workspace after ``cursor``, oldest first (a live client's resume)."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(WorkspaceEventRow)
                .where(WorkspaceEventRow.workspace_id == workspace_id, WorkspaceEventRow.id > cursor)
                .order_by(WorkspaceEventRow.id)
                .limit(limit)
            )
            return [to_event(r) for r in rows]

    async def get(self, principal: Principal, event_id: str) -> WorkspaceEvent | None:
        async with self.sessions() as session:
            row = await session.get(WorkspaceEventRow, event_id)
        return to_event(row) if row is not None and row.workspace_id == principal.workspace_id else None

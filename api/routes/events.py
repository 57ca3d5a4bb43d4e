"""Workspace events: emit (``POST /events``), query (``GET /events``) and follow (``GET /events/stream``, SSE)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.auth import VIEWER, presented_secret
from api.container import Services
from api.envelope import Envelope, Pagination, ok
from api.routes.common import Limit, PageNo
from api.schemas import Body, EventTypeName
from api.services.events import EventInfo, EventQuery
from api.services.identity import Principal
from api.services.live_feed import LiveClient
from api.sse import with_idle_ticks
from engine.errors import InvalidInput
from engine.ids import unix
from engine.workspace_events import is_event_id

Cursor = Annotated[str | None, Parameter(query="after", max_length=64, required=False)]
_encoder = msgspec.json.Encoder()
EARLIEST = "evt_" + "0" * 19  # sorts before every event id


class EventCreate(Body):
    type: EventTypeName  # dotted lower-case words of your own: "invoice.paid" (Ragline's first words are reserved)
    payload: dict[str, Any] = {}  # any JSON object, at most 64 KiB


class EventList(msgspec.Struct, frozen=True, kw_only=True):
    """A page of events; ``next_cursor`` continues it (as ``after`` when ascending, else as ``before``)."""

    data: list[EventInfo]
    pagination: Pagination
    next_cursor: str | None
    message: str = ""


class EventController(Controller):
    path = "/api/v1/events"
    tags = ["events"]

    @post("/", opt=VIEWER, status_code=201, summary="Emit an event into the workspace's log")
    async def emit_event(self, data: EventCreate, services: Services, principal: Principal) -> Envelope[EventInfo]:
        return ok(await services.events.emit_user(principal, data.type, data.payload), "Event emitted")

    @get("/", opt=VIEWER, summary="Query the event log: ?type=file.*,invoice.paid &source= &since= &until= &after=")
    async def list_events(
        self,
        services: Services,
        principal: Principal,
        type: Annotated[str | None, Parameter(query="type", max_length=1000)] = None,
        source: Annotated[str | None, Parameter(query="source", max_length=80)] = None,
        since: Annotated[datetime | None, Parameter(query="since")] = None,
        until: Annotated[datetime | None, Parameter(query="until")] = None,
        after: Cursor = None,
        before: Annotated[str | None, Parameter(query="before", max_length=64)] = None,
        page: PageNo = 1,
        limit: Limit = 50,
    ) -> EventList:
        types = tuple(t.strip() for t in (type or "").split(",") if t.strip())
        query = EventQuery(
            types=types, source=source or None, since=unix(since), until=unix(until), after=after, before=before,
            page=page, limit=limit,
        )  # fmt: skip
        result = await services.events.query(principal, query)
        shown = page if after is None and before is None else 1
        pages = math.ceil(result.total / limit) if limit else 0
        return EventList(
            data=result.items, pagination=Pagination(page=shown, limit=limit, total=result.total, total_pages=pages),
            next_cursor=result.next_cursor,
        )  # fmt: skip

    @get("/stream", opt=VIEWER, summary="Follow the workspace's events (SSE); resume with Last-Event-ID or ?after=")
    async def stream_events(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        principal: Principal,
        after: Cursor = None,
        follow: Annotated[bool, Parameter(query="follow")] = True,
    ) -> ServerSentEvent:
        cursor = after or request.headers.get("last-event-id") or None
        if cursor is not None and not is_event_id(cursor):
            raise InvalidInput(f"{cursor[:64]!r} is not an event id (evt_…)")
        if not follow:  # catch up only: what the log holds after the cursor (at most 500 events), then the end
            return ServerSentEvent(_catch_up(services, principal, cursor or EARLIEST))
        remote = f"{request.client.host}:{request.client.port}" if request.client else "-"
        client = services.live.connect(principal, presented_secret(request) or "", kind="sse", remote=remote)
        return ServerSentEvent(
            _frames(services, client, cursor), headers={"X-Accel-Buffering": "no", "Cache-Control": "no-cache"}
        )


async def _catch_up(services: Services, principal: Principal, cursor: str) -> AsyncIterator[ServerSentEventMessage]:
    for event in await services.events.after(principal.workspace_id, cursor):
        yield ServerSentEventMessage(data=_encoder.encode(EventInfo.of(event)).decode(), event=event.type, id=event.id)


async def _frames(services: Services, client: LiveClient, cursor: str | None) -> AsyncIterator[ServerSentEventMessage]:
    """Events as SSE frames (``event:`` type, ``id:`` event id), pings while idle, and a last ``closed`` frame
    when the server ends the stream (token revoked, client too slow)."""
    try:
        events = services.live.stream(client, cursor)
        async for event in with_idle_ticks(events, services.settings.sse_ping_interval_s):
            if event is None:
                yield ServerSentEventMessage(comment="ping")
                continue
            data = _encoder.encode(EventInfo.of(event)).decode()
            yield ServerSentEventMessage(data=data, event=event.type, id=event.id)
        if client.close_code is not None:
            reason = _encoder.encode({"code": client.close_code, "reason": client.close_reason}).decode()
            yield ServerSentEventMessage(data=reason, event="closed")
    finally:
        services.live.disconnect(client)

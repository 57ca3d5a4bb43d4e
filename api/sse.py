"""All run-event encoding lives here: run events -> JSON payloads and ``event:``/``id:``/``data:`` frames.

The frame's ``id`` is the event's per-run ``seq``; a client that reconnects sends it back as
``Last-Event-ID`` and gets the events after it. Unknown event names are safe for clients to ignore.
On the wire ``ts`` is ISO-8601 UTC, and ``thinking``/``content`` also carry their text as ``text``,
the name Ragline used before it adopted PromptRails' ``content`` (deprecated; removed in 0.3).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar, get_args

import msgspec
from litestar.response import ServerSentEvent, ServerSentEventMessage

from engine.events import ContentEvent, RunEvent, ThinkingEvent, event_type
from engine.ids import iso

PING_INTERVAL_S = 15.0
T = TypeVar("T")
_encoder = msgspec.json.Encoder()


def event_payload(event: RunEvent) -> dict[str, Any]:
    """The event as clients see it (SSE ``data`` and ``GET /executions/{id}/events``)."""
    payload: dict[str, Any] = msgspec.to_builtins(event)
    payload["ts"] = iso(event.ts)
    if isinstance(event, ContentEvent | ThinkingEvent):
        payload["text"] = event.content  # deprecated alias
    return payload


def run_event_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema components of a run event as ``event_payload`` writes it (for the OpenAPI document): ``RunEvent``,
    one of the event types by ``type``, and a component per type (``ts`` as ISO-8601, the deprecated ``text``)."""
    (union,), components = msgspec.json.schema_components((RunEvent,), ref_template="#/components/schemas/{name}")
    for cls in get_args(RunEvent):
        properties = components[cls.__name__]["properties"]
        properties["ts"] = {"type": "string", "format": "date-time"}
        if cls in (ContentEvent, ThinkingEvent):
            properties["text"] = {"type": "string", "deprecated": True, "description": "content, under its old name"}
            components[cls.__name__]["required"].append("text")
    return {"RunEvent": {"title": "RunEvent", "description": "A run event, by its type.", **union}, **components}


def to_message(event: RunEvent) -> ServerSentEventMessage:
    data = _encoder.encode(event_payload(event)).decode()
    return ServerSentEventMessage(data=data, event=event_type(event), id=str(event.seq))


def parse_last_event_id(value: str | None) -> int:
    """The seq to resume after; anything unparsable means from the start."""
    if not value:
        return 0
    tail = value.strip().rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() and len(tail) < 12 else 0


async def with_idle_ticks(items: AsyncIterator[T], interval_s: float) -> AsyncIterator[T | None]:
    """``items``, with a ``None`` whenever nothing came for ``interval_s`` (the caller sends a keepalive)."""
    iterator = items.__aiter__()
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=interval_s)
            if not done:
                yield None
                continue
            task, pending = pending, None
            try:
                item = task.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        # cancel and await the in-flight __anext__ before closing the generator, or a client
        # disconnect raises "aclose(): asynchronous generator is already running"
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(BaseException):
                await aclose()


async def with_keepalive(
    events: AsyncIterator[RunEvent], ping_interval_s: float = PING_INTERVAL_S
) -> AsyncIterator[ServerSentEventMessage]:
    """Frames for ``events``, plus a comment ping whenever nothing was sent for ``ping_interval_s``."""
    async for event in with_idle_ticks(events, ping_interval_s):
        yield ServerSentEventMessage(comment="ping") if event is None else to_message(event)


def event_stream_response(events: AsyncIterator[RunEvent], ping_interval_s: float = PING_INTERVAL_S) -> ServerSentEvent:
    return ServerSentEvent(with_keepalive(events, ping_interval_s), headers={"X-Accel-Buffering": "no"})

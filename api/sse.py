"""All SSE encoding lives here: run events -> ``event:``/``id:``/``data:`` frames, with keepalive pings.

The frame's ``id`` is the event's per-run ``seq``; a client that reconnects sends it back as
``Last-Event-ID`` and gets the events after it. Unknown event names are safe for clients to ignore.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar.response import ServerSentEvent, ServerSentEventMessage

from engine.events import RunEvent, encode_event, event_type

PING_INTERVAL_S = 15.0


def to_message(event: RunEvent) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=encode_event(event).decode(), event=event_type(event), id=str(event.seq))


def parse_last_event_id(value: str | None) -> int:
    """The seq to resume after; anything unparsable means from the start."""
    if not value:
        return 0
    tail = value.strip().rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() and len(tail) < 12 else 0


async def with_keepalive(
    events: AsyncIterator[RunEvent], ping_interval_s: float = PING_INTERVAL_S
) -> AsyncIterator[ServerSentEventMessage]:
    """Frames for ``events``, plus a comment ping whenever nothing was sent for ``ping_interval_s``."""
    iterator = events.__aiter__()
    pending: asyncio.Task[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=ping_interval_s)
            if not done:
                yield ServerSentEventMessage(comment="ping")
                continue
            task, pending = pending, None
            try:
                event = task.result()
            except StopAsyncIteration:
                return
            yield to_message(event)
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


def event_stream_response(events: AsyncIterator[RunEvent], ping_interval_s: float = PING_INTERVAL_S) -> ServerSentEvent:
    return ServerSentEvent(with_keepalive(events, ping_interval_s), headers={"X-Accel-Buffering": "no"})

"""The live feed over a WebSocket (``/api/v1/ws``) and the list of live connections (``/api/v1/clients``).

The handshake carries the token in ``Authorization: Bearer …`` (or ``X-API-Key``), or as ``?token=`` for
clients that cannot set headers (browsers); ``?workspace_id=`` or ``X-Workspace-ID`` picks a workspace. A refused
handshake gets an HTTP answer with the error envelope (401, 404, 429) where the server supports it, else a close
with 4000 + that status. ``?token=`` never reaches a log: the server's log lines redact it
(``api.request_context``).

Messages are JSON objects with an ``op``: the server sends ``hello`` (``client_id``), then ``event`` (``event``:
the event as ``GET /events`` shows it) for each event, oldest first, and ``pong``; the client may send ``ping`` and,
as its first message within half a second, ``{"op": "resume", "after": "evt_…"}`` (or ``?after=`` on the URL):
it gets what it missed after that id, then the live events. The server closes with 4401 when the token stops
being valid, 1013 when the client is too slow (it reconnects with its last id), 1001 when it shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import anyio
import msgspec
from litestar import WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect

from api.auth import ADMIN, presented_secret
from api.container import Services
from api.envelope import Envelope, error_body, ok
from api.services.identity import NotAuthenticated, Principal
from api.services.live_feed import ClientInfo, LiveClient
from engine.errors import NotFound, RateLimited, Unavailable
from engine.workspace_events import is_event_id

log = logging.getLogger("ragline.live")

RESUME_WAIT_S = 0.5
# the guard lets the handshake through (it cannot answer a WebSocket with the error envelope): the handler
# authenticates it itself, exactly as the guard would, and answers a refusal with an HTTP status
IN_HANDLER = {"public": True, "authenticated_in_handler": True}
_encoder = msgspec.json.Encoder()


async def _deny(socket: WebSocket[Any, Any, Any], status: int, code: str, message: str) -> None:
    await socket.receive()  # websocket.connect
    if "websocket.http.response" in (socket.scope.get("extensions") or {}):
        body = json.dumps(error_body(status, code, message)).encode()
        await socket.send({
            "type": "websocket.http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        })  # fmt: skip
        await socket.send({"type": "websocket.http.response.body", "body": body, "more_body": False})
    else:
        await socket.send({"type": "websocket.close", "code": 4000 + status, "reason": message[:120]})


async def _authenticate(socket: WebSocket[Any, Any, Any], services: Services) -> tuple[Principal, str] | None:
    secret = presented_secret(socket) or socket.query_params.get("token") or ""
    workspace_id = socket.headers.get("x-workspace-id") or socket.query_params.get("workspace_id") or None
    try:
        if not secret:
            raise NotAuthenticated()
        principal = await services.access.authenticate(secret, workspace_id=workspace_id)
        wait = services.request_limiter.take(principal.token_id)
        if wait:
            raise RateLimited("rate limit exceeded for this token", retry_after=wait)
        return principal, secret
    except NotAuthenticated:
        await _deny(socket, 401, "unauthorized", "missing, invalid, expired or revoked API token")
    except (NotFound, RateLimited, Unavailable) as exc:
        status = 404 if isinstance(exc, NotFound) else 429 if isinstance(exc, RateLimited) else 503
        await _deny(socket, status, exc.code, exc.message)
    return None


async def _first_cursor(socket: WebSocket[Any, Any, Any]) -> str | None:
    """``?after=``, else a ``resume`` message sent within ``RESUME_WAIT_S`` (events meanwhile are queued)."""
    after = socket.query_params.get("after")
    if after:
        return str(after)
    try:
        raw = await asyncio.wait_for(socket.receive_text(), RESUME_WAIT_S)
    except TimeoutError:
        return None
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if isinstance(message, dict) and message.get("op") == "ping":
        await socket.send_text('{"op":"pong"}')
    if isinstance(message, dict) and message.get("op") == "resume" and isinstance(message.get("after"), str):
        return str(message["after"])
    return None


async def _listen(socket: WebSocket[Any, Any, Any], scope: anyio.CancelScope) -> None:
    """The client's messages: ``ping`` is answered; a disconnect ends the connection."""
    try:
        while True:
            raw = await socket.receive_text()
            if '"ping"' in raw:
                await socket.send_text('{"op":"pong"}')
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass
    finally:
        scope.cancel()


async def _push(socket: WebSocket[Any, Any, Any], services: Services, client: LiveClient, after: str | None) -> None:
    try:
        async for event in services.live.stream(client, after):
            await socket.send_text(services.live.frame(event))
        if client.close_code is not None:  # dropped by the server: revoked token, too slow, shutdown
            await socket.close(client.close_code, client.close_reason)
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the client went away
    except Exception:  # the log could not be read (database down): the client reconnects and resumes
        log.exception("live feed %s ended", client.id)
        await _close_quietly(socket, 1011, "internal error: reconnect with ?after=<last event id>")


async def _close_quietly(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await socket.close(code, reason)


@websocket("/api/v1/ws", opt=IN_HANDLER, name="live-feed")
async def live_feed(socket: WebSocket[Any, Any, Any], services: Services) -> None:
    """The workspace's events, live, over a WebSocket."""
    authenticated = await _authenticate(socket, services)
    if authenticated is None:
        return
    principal, secret = authenticated
    await socket.accept()
    remote = f"{socket.client.host}:{socket.client.port}" if socket.client else "-"
    client = services.live.connect(principal, secret, kind="ws", remote=remote)
    try:
        await socket.send_text(_encoder.encode({"op": "hello", "client_id": client.id}).decode())
        after = await _first_cursor(socket)
        if after is not None and not is_event_id(after):
            await _close_quietly(socket, 4422, "after is not an event id (evt_…)")
            return
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_listen, socket, tasks.cancel_scope)
            await _push(socket, services, client, after)
            tasks.cancel_scope.cancel()
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the client went away before the stream began
    finally:
        services.live.disconnect(client)


@get("/api/v1/clients", opt=ADMIN, tags=["events"], summary="The workspace's live connections (WebSocket and SSE)")
async def live_clients(services: Services, principal: Principal) -> Envelope[list[ClientInfo]]:
    return ok(services.live.clients(principal))


LIVE_HANDLERS = [live_feed, live_clients]

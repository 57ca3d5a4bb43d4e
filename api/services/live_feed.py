"""The live feed: a workspace's events pushed to connected clients (WebSocket ``/ws``, SSE ``/events/stream``).

Fan-out is in process: every client has one bounded queue; the event log's writer hands each stored batch to
``publish``, which puts each event into the queues of that workspace's clients without waiting. A client whose
queue is full is too slow: it is dropped (WebSocket close code 1013, "try again later") rather than slowing the
others, and resumes from its last event id. A client is registered before it reads what it missed from the log,
so nothing falls between the replay and the live events (the replay's last id filters the overlap).

Tokens: a client's token is checked again every ``recheck_s`` seconds, and at once when the log says a token
was revoked, regenerated or deleted; a token that no longer authenticates closes its connections (4401). The
secret stays in memory only, never in a log or a listing.

With several processes each pushes its own events; a client sees the others' when it resumes from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import msgspec

from api.services.access import AccessService
from api.services.events import EventInfo, EventService
from api.services.identity import NotAuthenticated, Principal
from engine.aio import wait_until_set
from engine.errors import NotFound
from engine.ids import new_id, now, utc
from engine.workspace_events import WorkspaceEvent

log = logging.getLogger("ragline.live")

CLOSE_TOO_SLOW = 1013  # try again later: resume with the last id
CLOSE_UNAUTHENTICATED = 4401  # the token was revoked, expired or regenerated
CLOSE_SHUTDOWN = 1001  # going away
TOKEN_EVENTS = frozenset({"token.revoked", "token.deleted", "token.regenerated", "member.removed", "user.deleted"})
REPLAY_PAGE = 500
FRAME_CACHE = 4096
_encoder = msgspec.json.Encoder()


@dataclass(eq=False)
class LiveClient:
    id: str
    kind: Literal["ws", "sse"]
    principal: Principal
    remote: str
    connected_at: float
    queue: asyncio.Queue[WorkspaceEvent | None]
    secret: str = field(repr=False)  # to check the token again; never logged, never listed
    sent: int = 0
    close_code: int | None = None
    close_reason: str = ""

    def drop(self, code: int, reason: str) -> None:
        """End the client's stream: its queue is emptied and ends with ``None``."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class ClientInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str  # ws | sse
    user_id: str
    token_id: str
    remote: str
    connected_at: datetime
    events_sent: int


class LiveFeed:
    def __init__(
        self, events: EventService, access: AccessService, *, queue_size: int = 1000, recheck_s: float = 10.0
    ) -> None:
        self.events = events
        self.access = access
        self.queue_size = max(1, queue_size)
        self.recheck_s = recheck_s
        self._clients: dict[str, dict[str, LiveClient]] = {}  # workspace id -> client id -> client
        self._task: asyncio.Task[None] | None = None
        self._recheck_now = asyncio.Event()
        self._frames: OrderedDict[str, str] = OrderedDict()  # event id -> its WebSocket message, encoded once
        events.listen(self.publish)

    def frame(self, event: WorkspaceEvent) -> str:
        """The event's WebSocket message, encoded once however many clients get it."""
        text = self._frames.get(event.id)
        if text is None:
            text = _encoder.encode({"op": "event", "event": EventInfo.of(event)}).decode()
            self._frames[event.id] = text
            if len(self._frames) > FRAME_CACHE:
                self._frames.popitem(last=False)
        return text

    # -- fan-out -----------------------------------------------------------------------------------

    def publish(self, batch: Sequence[WorkspaceEvent]) -> None:
        """Put each event into the queues of its workspace's clients (never waits)."""
        for event in batch:
            for client in list(self._clients.get(event.workspace_id, {}).values()):
                if client.close_code is not None:
                    continue
                try:
                    client.queue.put_nowait(event)
                except asyncio.QueueFull:
                    log.warning("live client %s is too slow (%d queued): dropped", client.id, client.queue.qsize())
                    client.drop(CLOSE_TOO_SLOW, "too slow: reconnect with ?after=<last event id>")
            if event.type in TOKEN_EVENTS:
                self._recheck_now.set()

    # -- connections -------------------------------------------------------------------------------

    def connect(self, principal: Principal, secret: str, *, kind: Literal["ws", "sse"], remote: str) -> LiveClient:
        client = LiveClient(
            id=new_id("cli"), kind=kind, principal=principal, remote=remote, connected_at=now(),
            queue=asyncio.Queue(self.queue_size), secret=secret,
        )  # fmt: skip
        self._clients.setdefault(principal.workspace_id, {})[client.id] = client
        return client

    def disconnect(self, client: LiveClient) -> None:
        clients = self._clients.get(client.principal.workspace_id, {})
        clients.pop(client.id, None)
        if not clients:
            self._clients.pop(client.principal.workspace_id, None)

    def clients(self, principal: Principal) -> list[ClientInfo]:
        """The workspace's live connections, oldest first."""
        found = sorted(self._clients.get(principal.workspace_id, {}).values(), key=lambda c: c.connected_at)
        return [self._info(c) for c in found]

    @staticmethod
    def _info(c: LiveClient) -> ClientInfo:
        return ClientInfo(
            id=c.id, kind=c.kind, user_id=c.principal.user_id, token_id=c.principal.token_id, remote=c.remote,
            connected_at=utc(c.connected_at), events_sent=c.sent,
        )  # fmt: skip

    async def stream(self, client: LiveClient, after: str | None) -> AsyncIterator[WorkspaceEvent]:
        """What the client missed after ``after`` (from the log), then live events until it is dropped."""
        last = after
        if after is not None:
            while True:
                page = await self.events.after(client.principal.workspace_id, last or after, limit=REPLAY_PAGE)
                for event in page:
                    if client.close_code is not None:
                        return
                    last = event.id
                    client.sent += 1
                    yield event
                if len(page) < REPLAY_PAGE:
                    break
        while True:
            queued = await client.queue.get()
            if queued is None:
                return
            if last is not None and queued.id <= last:
                continue  # already replayed from the log
            client.sent += 1
            yield queued

    # -- token checks ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._recheck_loop(), name="live feed token checks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for clients in list(self._clients.values()):
            for client in list(clients.values()):
                client.drop(CLOSE_SHUTDOWN, "server shutting down")

    async def _recheck_loop(self) -> None:
        while True:
            await wait_until_set(self._recheck_now, self.recheck_s)
            self._recheck_now.clear()
            try:
                await self.recheck()
            except Exception:
                log.exception("live feed token check failed")

    async def recheck(self) -> None:
        """Drop the clients whose token no longer authenticates (revoked, expired, regenerated, member removed);
        one check per token and workspace, however many connections share it."""
        verdicts: dict[tuple[str, str], bool] = {}
        for clients in list(self._clients.values()):
            for client in list(clients.values()):
                if client.close_code is not None:
                    continue
                key = (client.secret, client.principal.workspace_id)
                if key not in verdicts:
                    try:
                        await self.access.authenticate(client.secret, workspace_id=client.principal.workspace_id)
                        verdicts[key] = True
                    except (NotAuthenticated, NotFound):
                        verdicts[key] = False
                if not verdicts[key]:
                    client.drop(CLOSE_UNAUTHENTICATED, "token revoked or expired")

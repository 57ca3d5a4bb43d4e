"""Subscriptions: outbound webhooks for chosen event types, signed and delivered like run callbacks.

A subscription names a URL and event type patterns (``file.*``, ``invoice.paid``, ``*``). When the event log
stores a matching event, one ``subscription_deliveries`` row is written per subscription (the durable queue) and
a delivery loop POSTs it with the machinery of ``api.services.callbacks``: Standard Webhooks signature with the
subscription's secret (``webhook-id`` = the delivery id, the same on every retry), the SSRF guard on every attempt
(connecting to the checked address, no redirects), retries with exponential backoff, every attempt in the row's
log (``GET /subscriptions/{id}/deliveries``). The body: ``{"type", "timestamp", "data": <the event>}``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.background import PassLoop
from api.services.callbacks import attempt_log, post_signed, record_attempt
from api.services.events import EventInfo, EventService
from api.services.identity import Principal
from engine import webhooks
from engine.db.models import Subscription, SubscriptionDelivery, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import Conflict, InvalidInput
from engine.ids import iso, utc, utc_or_none
from engine.net import IPNetwork, resolve_url_async
from engine.workspace_events import WorkspaceEvent, check_pattern, matches_any
from ingest.views import Page

log = logging.getLogger("ragline.subscriptions")

IDLE_POLL_S = 5.0
RULES_TTL_S = 5.0
MAX_PATTERNS = 20
USER_AGENT = "ragline-subscriptions/1"
_encoder = msgspec.json.Encoder()


class SubscriptionInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    url: str
    event_types: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Subscription) -> SubscriptionInfo:
        return cls(
            id=row.id, name=row.name, url=row.url, event_types=list(row.event_types or []), enabled=row.enabled,
            created_at=utc(row.created_at), updated_at=utc(row.updated_at),
        )  # fmt: skip


class SubscriptionWithSecret(SubscriptionInfo, frozen=True, kw_only=True):
    """Returned by create and rotate-secret only: the one time the signing secret is shown."""

    secret: str


class SubscriptionFields(msgspec.Struct, kw_only=True):
    name: str | None = None
    url: str | None = None
    event_types: list[str] | None = None
    enabled: bool | None = None


class DeliveryInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # the webhook-id
    subscription_id: str
    event_id: str
    event_type: str
    url: str
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    log: list[Any]  # one entry per attempt: attempt, at, status_code, error, duration_ms
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, row: SubscriptionDelivery) -> DeliveryInfo:
        return cls(
            id=row.id, subscription_id=row.subscription_id, event_id=row.event_id, event_type=row.event_type,
            url=row.url, status=row.status, attempts=row.attempts,
            next_attempt_at=utc_or_none(row.next_attempt_at) if row.status == "pending" else None,
            last_status_code=row.last_status_code, last_error=row.last_error, log=attempt_log(row.log),
            created_at=utc(row.created_at), delivered_at=utc_or_none(row.delivered_at),
        )  # fmt: skip


def webhook_body(event: WorkspaceEvent) -> str:
    """The Standard Webhooks envelope of an event (``data`` as ``GET /events`` shows it)."""
    body = {"type": event.type, "timestamp": iso(event.ts), "data": EventInfo.of(event)}
    return _encoder.encode(body).decode()


class SubscriptionService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], events: EventService, *, allowed: Sequence[IPNetwork] = (),
        max_attempts: int = 6, retry_base_s: float = 5.0,
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.allowed = tuple(allowed)
        self.max_attempts = max(1, max_attempts)
        self.retry_base_s = retry_base_s
        self._rules: dict[str, tuple[float, builtins.list[tuple[str, str, builtins.list[str]]]]] = {}
        self._queue: asyncio.Queue[WorkspaceEvent] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop = PassLoop("subscription deliveries", self.deliver_due, error_delay_s=IDLE_POLL_S, min_delay_s=0.05)
        self._in_flight: set[str] = set()
        events.listen(self._on_events)

    # -- definitions -----------------------------------------------------------------------------

    async def _check(self, row: Subscription) -> None:
        if not row.event_types or len(row.event_types) > MAX_PATTERNS:
            raise InvalidInput(f"event_types: name 1 to {MAX_PATTERNS} event type patterns (file.*, invoice.paid, *)")
        for pattern in row.event_types:
            check_pattern(pattern)
        await resolve_url_async(row.url, allowed=self.allowed)  # the SSRF guard at save time; every attempt again

    def _apply(self, row: Subscription, fields: SubscriptionFields) -> None:
        for key, value in msgspec.structs.asdict(fields).items():
            if value is not None:
                setattr(row, key, value)

    async def create(self, principal: Principal, fields: SubscriptionFields) -> SubscriptionWithSecret:
        if not fields.name or not fields.url:
            raise InvalidInput("a subscription needs a name, a url and event_types")
        row = Subscription(
            id=new_id("sub"), workspace_id=principal.workspace_id, name=fields.name, url=fields.url, event_types=[],
            secret=webhooks.new_secret(), enabled=True, created_at=now(), updated_at=now(),
        )  # fmt: skip
        self._apply(row, fields)
        await self._check(row)
        async with self.sessions() as session:
            session.add(row)
            await self._commit(session, row)
        return SubscriptionWithSecret(**msgspec.structs.asdict(SubscriptionInfo.of(row)), secret=row.secret)

    async def list(self, principal: Principal, *, page: int, limit: int) -> Page[SubscriptionInfo]:
        async with self.sessions() as session:
            total, rows = await fetch_page(
                session, Subscription, [Subscription.workspace_id == principal.workspace_id],
                [Subscription.created_at.desc(), Subscription.id], page=page, limit=limit,
            )  # fmt: skip
        return Page(items=[SubscriptionInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def get(self, principal: Principal, subscription_id: str) -> SubscriptionInfo:
        async with self.sessions() as session:
            return SubscriptionInfo.of(await self._row(session, principal, subscription_id))

    async def update(self, principal: Principal, subscription_id: str, fields: SubscriptionFields) -> SubscriptionInfo:
        async with self.sessions() as session:
            row = await self._row(session, principal, subscription_id)
            self._apply(row, fields)
            await self._check(row)
            row.updated_at = now()
            await self._commit(session, row)
            return SubscriptionInfo.of(row)

    async def rotate_secret(self, principal: Principal, subscription_id: str) -> SubscriptionWithSecret:
        """A new signing secret (shown once); pending retries are signed with it from now on."""
        async with self.sessions() as session:
            row = await self._row(session, principal, subscription_id)
            row.secret, row.updated_at = webhooks.new_secret(), now()
            await session.commit()
            return SubscriptionWithSecret(**msgspec.structs.asdict(SubscriptionInfo.of(row)), secret=row.secret)

    async def delete(self, principal: Principal, subscription_id: str) -> None:
        async with self.sessions() as session:
            await session.delete(await self._row(session, principal, subscription_id))
            await session.commit()
        self._rules.pop(principal.workspace_id, None)

    async def deliveries(
        self, principal: Principal, subscription_id: str, *, page: int, limit: int
    ) -> Page[DeliveryInfo]:
        async with self.sessions() as session:
            await self._row(session, principal, subscription_id)
            total, rows = await fetch_page(
                session, SubscriptionDelivery, [SubscriptionDelivery.subscription_id == subscription_id],
                [SubscriptionDelivery.created_at.desc(), SubscriptionDelivery.id], page=page, limit=limit,
            )  # fmt: skip
        return Page(items=[DeliveryInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def _row(self, session: AsyncSession, principal: Principal, subscription_id: str) -> Subscription:
        return await get_in_workspace(session, Subscription, subscription_id, principal.workspace_id, "subscription")

    async def _commit(self, session: AsyncSession, row: Subscription) -> None:
        try:
            await session.commit()
        except IntegrityError:
            raise Conflict(f"a subscription named {row.name!r} already exists") from None
        self._rules.pop(row.workspace_id, None)

    # -- queueing: one delivery per matching subscription, written off the writer's path ----------

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._enqueue_loop(), name="subscription queue")
        self._loop.start()

    async def stop(self) -> None:
        task, self._task, self._queue = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._loop.stop()

    def _on_events(self, batch: Sequence[WorkspaceEvent]) -> None:
        if self._queue is not None:
            for event in batch:
                self._queue.put_nowait(event)

    async def _enqueue_loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < 200:
                batch.append(queue.get_nowait())
            try:
                if await self.enqueue(batch):
                    self._loop.wake()
            except Exception:
                log.exception("could not queue webhook deliveries for %d event(s)", len(batch))

    async def _subscribers(self, workspace_id: str) -> builtins.list[tuple[str, str, builtins.list[str]]]:
        cached = self._rules.get(workspace_id)
        if cached is not None and time.monotonic() - cached[0] < RULES_TTL_S:
            return cached[1]
        async with self.sessions() as session:
            rows = await session.execute(
                select(Subscription.id, Subscription.url, Subscription.event_types).where(
                    Subscription.workspace_id == workspace_id, Subscription.enabled.is_(True)
                )
            )
            found = [(r[0], r[1], list(r[2] or [])) for r in rows]
        self._rules[workspace_id] = (time.monotonic(), found)
        return found

    async def enqueue(self, batch: Sequence[WorkspaceEvent]) -> int:
        """Write a pending delivery for each (event, matching subscription); returns how many."""
        rows = []
        for event in batch:
            for sub_id, url, patterns in await self._subscribers(event.workspace_id):
                if matches_any(patterns, event.type):
                    rows.append(SubscriptionDelivery(
                        id=new_id("whd"), subscription_id=sub_id, workspace_id=event.workspace_id, event_id=event.id,
                        event_type=event.type, url=url, payload=webhook_body(event), status="pending", attempts=0,
                        next_attempt_at=now(), log=[], created_at=now(),
                    ))  # fmt: skip
        if rows:
            async with self.sessions() as session:
                session.add_all(rows)
                await session.commit()
        return len(rows)

    # -- delivering ------------------------------------------------------------------------------

    async def deliver_due(self) -> float:
        """Attempt every due delivery once (concurrently); returns seconds until the next is due."""
        async with self.sessions() as session:
            pending, when = SubscriptionDelivery.status == "pending", SubscriptionDelivery.next_attempt_at
            ids = select(SubscriptionDelivery.id).where(pending, when <= now()).order_by(when).limit(50)
            due = list(await session.scalars(ids))
            upcoming = await session.scalar(select(when).where(pending, when > now()).order_by(when).limit(1))
        due = [d for d in due if d not in self._in_flight]
        if due:
            await asyncio.gather(*(self._attempt(delivery_id) for delivery_id in due))
            return 0.0
        return min(IDLE_POLL_S, upcoming - now()) if upcoming is not None else IDLE_POLL_S

    async def _attempt(self, delivery_id: str) -> None:
        self._in_flight.add(delivery_id)
        try:
            async with self.sessions() as session:
                row = await session.get(SubscriptionDelivery, delivery_id)
                if row is None or row.status != "pending":
                    return
                subscription = await session.get(Subscription, row.subscription_id)
                if subscription is None:
                    return
                started = time.monotonic()
                code, error = await post_signed(
                    subscription.url, subscription.secret, row.id, row.payload.encode("utf-8"), allowed=self.allowed,
                    user_agent=USER_AGENT,
                )  # fmt: skip
                record_attempt(
                    row, code, error, (time.monotonic() - started) * 1000, max_attempts=self.max_attempts,
                    retry_base_s=self.retry_base_s,
                )  # fmt: skip
                row.url = subscription.url
                await session.commit()
        finally:
            self._in_flight.discard(delivery_id)

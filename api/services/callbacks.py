"""Outbound ``run.finished`` callbacks: signed, retried with backoff, logged, resumed after restart.

When a run of an agent or trigger that names a ``callback_url`` ends, a ``callback_deliveries``
row is written (the durable queue) and the delivery worker POSTs the event, signed like inbound
webhooks (``engine.webhooks``; the ``webhook-id`` is the delivery id, the same on every retry).
A non-2xx answer, a timeout or a refused connection is retried after ``base``, ``2 base``,
``4 base`` … seconds (capped at an hour) until ``max_attempts``; every attempt is appended to the
row's ``log``. Each attempt resolves the URL through the SSRF guard and connects to the checked
address (never re-resolving), exactly like ``http_fetch``; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.background import PassLoop
from api.services.identity import Principal
from engine import webhooks
from engine.db.models import Agent, CallbackDelivery, Run, Trigger, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import BlockedDestination, NotFound
from engine.events import RunEvent
from engine.ids import iso, utc, utc_or_none
from engine.net import IPNetwork, resolve_url_async
from engine.run_records import FinishedHook, RunRecord
from ingest.views import Page

log = logging.getLogger("ragline.callbacks")

EVENT = "run.finished"
ATTEMPT_TIMEOUT_S = 10.0
MAX_BACKOFF_S = 3600.0
MAX_OUTPUT = 100_000
IDLE_POLL_S = 5.0


class DeliveryRow(Protocol):
    """What a queued signed delivery keeps (``callback_deliveries`` and ``subscription_deliveries`` rows)."""

    status: str
    attempts: int
    next_attempt_at: float
    last_status_code: int | None
    last_error: str | None
    log: list[Any]
    delivered_at: float | None


async def post_signed(
    url: str, secret: str, msg_id: str, body: bytes, *, allowed: Sequence[IPNetwork] = (),
    user_agent: str = "ragline-callbacks/1",
) -> tuple[int | None, str | None]:  # fmt: skip
    """One signed POST through the SSRF guard to the checked address (never re-resolved, no redirects):
    ``(status code, error)``, the error ``None`` for a 2xx answer."""
    try:
        target = await resolve_url_async(url, allowed=allowed)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": user_agent,
            "Host": target.host_header,
            **webhooks.sign_headers(secret, msg_id, body),
        }
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=ATTEMPT_TIMEOUT_S) as client:
            request = client.build_request("POST", target.pinned_url(), headers=headers, content=body)
            if target.scheme == "https":
                request.extensions["sni_hostname"] = target.host
            response = await client.send(request)
            await response.aclose()
    except BlockedDestination as exc:
        return None, f"blocked: {exc.message}"
    except (httpx.HTTPError, OSError) as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:300]}"
    return response.status_code, None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"


def record_attempt(
    row: DeliveryRow, code: int | None, error: str | None, ms: float, *, max_attempts: int, retry_base_s: float,
    final: bool = False,
) -> None:  # fmt: skip
    """Log one attempt on the row; then delivered, failed (out of attempts, or ``final``) or due again after
    ``retry_base_s * 2**(attempts - 1)`` seconds (capped at an hour, +-10 % jitter)."""
    row.attempts += 1
    row.last_status_code, row.last_error = code, error
    row.log = [
        *(row.log or []),
        {"attempt": row.attempts, "at": now(), "status_code": code, "error": error, "duration_ms": round(ms, 1)},
    ]
    if error is None:
        row.status, row.delivered_at = "delivered", now()
    elif final or row.attempts >= max_attempts:
        row.status = "failed"
    else:
        backoff = min(MAX_BACKOFF_S, retry_base_s * 2 ** (row.attempts - 1))
        # +-10 %: deliveries that failed together (a receiver outage) do not all come back in the same second
        row.next_attempt_at = now() + backoff * random.uniform(0.9, 1.1)


def attempt_log(entries: list[Any] | None) -> list[Any]:
    """A delivery's attempts as shown (``at`` as an aware UTC datetime)."""
    return [{**entry, "at": utc(entry["at"])} if "at" in entry else entry for entry in entries or []]


class CallbackInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery as shown through the API (its log of attempts included, never the secret)."""

    id: str
    run_id: str
    trigger_id: str | None
    agent_id: str | None
    url: str
    event: str
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    log: list[Any]  # one entry per attempt: attempt, at (ISO-8601), status_code, error, duration_ms
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, row: CallbackDelivery) -> CallbackInfo:
        return cls(
            id=row.id,
            run_id=row.run_id,
            trigger_id=row.trigger_id,
            agent_id=row.agent_id,
            url=row.url,
            event=row.event,
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=utc_or_none(row.next_attempt_at) if row.status == "pending" else None,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            log=[{**entry, "at": utc(entry["at"])} if "at" in entry else entry for entry in row.log or []],
            created_at=utc(row.created_at),
            delivered_at=utc_or_none(row.delivered_at),
        )


def payload_of(record: RunRecord) -> dict[str, Any]:
    """The ``run.finished`` event (Standard Webhooks envelope: type, timestamp, data)."""
    return {
        "type": EVENT,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "run_id": record.id,
            "execution_id": record.id,
            "kind": record.kind,
            "status": record.status,
            "agent_id": record.agent_id,
            "trigger_id": record.trigger_id,
            "output": (record.output or "")[:MAX_OUTPUT] if record.output is not None else None,
            "error": record.error,
            "error_code": record.error_code,
            "token_usage": {
                "prompt": record.prompt_tokens,
                "completion": record.completion_tokens,
                "total": record.total_tokens,
            },
            "started_at": iso(record.started_at),
            "finished_at": iso(record.finished_at) if record.finished_at is not None else None,
            "latency_ms": record.latency_ms,
        },
    }


class CallbackService:
    """Queues deliveries when runs end and delivers them in the background (``start``/``stop``)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        allowed: Sequence[IPNetwork] = (),
        max_attempts: int = 6,
        retry_base_s: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.allowed = tuple(allowed)
        self.max_attempts = max(1, max_attempts)
        self.retry_base_s = retry_base_s
        self._loop = PassLoop("callback deliveries", self.deliver_due, error_delay_s=IDLE_POLL_S, min_delay_s=0.05)
        self._in_flight: set[str] = set()

    # -- queueing (a RunManager finished hook) --------------------------------------------------

    def hooks_for(self, agent_id: str | None, trigger_id: str | None) -> list[FinishedHook]:
        """The finished hook that queues this run's callbacks (none for a run with neither owner)."""
        if agent_id is None and trigger_id is None:
            return []

        async def queue(record: RunRecord, events: Sequence[RunEvent]) -> None:
            await self.enqueue(record, agent_id=agent_id, trigger_id=trigger_id)

        return [queue]

    async def _destinations(
        self, session: AsyncSession, agent_id: str | None, trigger_id: str | None
    ) -> list[tuple[str, str | None, str | None]]:
        """(url, trigger_id, agent_id) per subscriber; the URLs are read when the run ends."""
        found: list[tuple[str, str | None, str | None]] = []
        trigger = await session.get(Trigger, trigger_id) if trigger_id else None
        if trigger is not None and trigger.callback_url:
            found.append((trigger.callback_url, trigger.id, trigger.agent_id))
        agent = await session.get(Agent, agent_id) if agent_id else None
        if agent is not None and agent.callback_url and agent.callback_url not in [f[0] for f in found]:
            found.append((agent.callback_url, None, agent.id))
        return found

    async def enqueue(self, record: RunRecord, *, agent_id: str | None, trigger_id: str | None) -> list[str]:
        """Write one pending delivery per subscriber of this run, then wake the worker."""
        body = json.dumps(payload_of(record), ensure_ascii=False, separators=(",", ":"))
        ids: list[str] = []
        async with self.sessions() as session:
            for url, owner_trigger, owner_agent in await self._destinations(session, agent_id, trigger_id):
                row = CallbackDelivery(
                    id=new_id("cbd"),
                    workspace_id=record.workspace_id,
                    run_id=record.id,
                    trigger_id=owner_trigger,
                    agent_id=owner_agent,
                    url=url,
                    event=EVENT,
                    payload=body,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now(),
                    log=[],
                    created_at=now(),
                )
                session.add(row)
                ids.append(row.id)
            await session.commit()
        if ids:
            self._loop.wake()
        return ids

    # -- the worker -----------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for due deliveries now (call on the event loop)."""
        self._loop.wake()

    def start(self) -> None:
        """Deliver in the background; pending rows left by a previous process are picked up first."""
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def deliver_due(self) -> float:
        """Attempt every due delivery once (concurrently); returns seconds until the next is due."""
        async with self.sessions() as session:
            due = list(
                await session.scalars(
                    select(CallbackDelivery.id)
                    .where(CallbackDelivery.status == "pending", CallbackDelivery.next_attempt_at <= now())
                    .order_by(CallbackDelivery.next_attempt_at)
                    .limit(20)
                )
            )
            upcoming = await session.scalar(
                select(CallbackDelivery.next_attempt_at)
                .where(CallbackDelivery.status == "pending", CallbackDelivery.next_attempt_at > now())
                .order_by(CallbackDelivery.next_attempt_at)
                .limit(1)
            )
        due = [d for d in due if d not in self._in_flight]
        if due:
            await asyncio.gather(*(self._attempt(delivery_id) for delivery_id in due))
            return 0.0
        return min(IDLE_POLL_S, upcoming - now()) if upcoming is not None else IDLE_POLL_S

    async def _secret(self, session: AsyncSession, row: CallbackDelivery) -> str:
        """The signing secret of the delivery's owner (an agent's is created on first use)."""
        if row.trigger_id:
            trigger = await session.get(Trigger, row.trigger_id)
            if trigger is not None and trigger.callback_secret:
                return trigger.callback_secret
        agent = await session.get(Agent, row.agent_id) if row.agent_id else None
        if agent is None:
            raise NotFound("agent", row.agent_id)
        if not agent.callback_secret:
            agent.callback_secret = webhooks.new_secret()
        return agent.callback_secret

    async def _attempt(self, delivery_id: str) -> None:
        self._in_flight.add(delivery_id)
        try:
            async with self.sessions() as session:
                row = await session.get(CallbackDelivery, delivery_id)
                if row is None or row.status != "pending":
                    return
                try:
                    secret = await self._secret(session, row)
                except NotFound:  # its owner was deleted: nothing can sign it any more
                    self._record(row, None, "owner deleted", 0.0, final=True)
                    await session.commit()
                    return
                started = time.monotonic()
                code, error = await self._post(row, secret)
                self._record(row, code, error, (time.monotonic() - started) * 1000)
                await session.commit()
        finally:
            self._in_flight.discard(delivery_id)

    async def _post(self, row: CallbackDelivery, secret: str) -> tuple[int | None, str | None]:
        return await post_signed(row.url, secret, row.id, row.payload.encode("utf-8"), allowed=self.allowed)

    def _record(
        self, row: CallbackDelivery, code: int | None, error: str | None, ms: float, *, final: bool = False
    ) -> None:
        record_attempt(row, code, error, ms, max_attempts=self.max_attempts, retry_base_s=self.retry_base_s,
                       final=final)  # fmt: skip

    # -- reading the log and the agent's secret -------------------------------------------------

    async def list(
        self, principal: Principal, *, page: int, limit: int, run_id: str | None = None, trigger_id: str | None = None
    ) -> Page[CallbackInfo]:
        where = [CallbackDelivery.workspace_id == principal.workspace_id]
        if run_id is not None:
            where.append(CallbackDelivery.run_id == run_id)
        if trigger_id is not None:
            where.append(CallbackDelivery.trigger_id == trigger_id)
        async with self.sessions() as session:
            if run_id is not None:
                await get_in_workspace(session, Run, run_id, principal.workspace_id, "run")
            if trigger_id is not None:
                await get_in_workspace(session, Trigger, trigger_id, principal.workspace_id, "trigger")
            order = [CallbackDelivery.created_at.desc(), CallbackDelivery.id]
            total, rows = await fetch_page(session, CallbackDelivery, where, order, page=page, limit=limit)
            return Page(items=[CallbackInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def rotate_agent_secret(self, principal: Principal, agent_id: str) -> str:
        """A new secret for the agent's callbacks (shown once; the old one stops signing at once)."""
        async with self.sessions() as session:
            agent = await get_in_workspace(session, Agent, agent_id, principal.workspace_id, "agent")
            agent.callback_secret = webhooks.new_secret()
            await session.commit()
            return agent.callback_secret

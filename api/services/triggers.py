"""Triggers: a workspace's manual, webhook and schedule starters of agent runs.

A trigger renders its ``input_template`` from the event (webhook body, schedule time, manual
input) and starts a run of its agent with ``kind="trigger"``; the run is recorded and streamed like
any other. Webhook deliveries are verified (``engine.webhooks``) first, then counted: an authentic one
against the trigger's budget (``webhook_rate_per_minute``), a refused one (unsigned, badly signed, stale)
against a separate budget of the same size per trigger and client address, so a stranger's garbage can never
use up the sender's. An authentic delivery must carry a JSON object or array (else ``WebhookPayloadError``,
and its id stays unused for the corrected resend); it is de-duplicated by ``webhook-id`` /
``Idempotency-Key`` (``webhook_deliveries``). Secrets are generated here and returned only by create and rotate.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.cron import check_cron, next_fire, zone
from api.services.identity import Principal
from api.services.rate_limits import Budget
from api.services.runs import RunService, RunStart
from api.services.trigger_templates import MAX_INPUT, check_template, render_template
from engine import webhooks
from engine.db.models import Agent, Trigger, WebhookDelivery, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import InvalidInput, NotFound
from engine.ids import utc, utc_or_none
from engine.net import IPNetwork, resolve_url_async
from ingest.views import Page

TRIGGER_TYPES = ("manual", "webhook", "schedule")
# Delivery ids are remembered this long. Signatures older than webhooks.TOLERANCE_S (5 min) are refused
# anyway; a day also covers senders that retry one event under its Idempotency-Key with fresh signatures.
DELIVERY_RETENTION_S = 24 * 3600

# -- values shown through the API ---------------------------------------------------------------


class TriggerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A trigger as shown to people: never its secrets."""

    id: str
    agent_id: str
    name: str
    type: str
    input_template: str
    enabled: bool
    webhook_url: str | None  # POST here, signed with the webhook secret
    cron: str | None
    timezone: str
    next_fire_at: datetime | None
    last_fired_at: datetime | None
    callback_url: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Trigger) -> TriggerInfo:
        return cls(
            id=row.id,
            agent_id=row.agent_id,
            name=row.name,
            type=row.type,
            input_template=row.input_template,
            enabled=row.enabled,
            webhook_url=f"/api/webhook/{row.webhook_path}" if row.webhook_path else None,
            cron=row.cron,
            timezone=row.timezone,
            next_fire_at=utc_or_none(row.next_fire_at),
            last_fired_at=utc_or_none(row.last_fired_at),
            callback_url=row.callback_url,
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
        )


class TriggerWithSecrets(TriggerInfo, frozen=True, kw_only=True):
    """Returned by create and rotate only: the one time the secrets are shown."""

    webhook_secret: str | None = None
    callback_secret: str | None = None


class TriggerFields(msgspec.Struct, kw_only=True):
    """Editable fields; ``None`` leaves a field unchanged on update."""

    agent_id: str | None = None
    name: str | None = None
    type: str | None = None
    input_template: str | None = None
    enabled: bool | None = None
    cron: str | None = None
    timezone: str | None = None
    callback_url: str | None = None


class WebhookAccepted(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str | None
    execution_id: str | None
    duplicate: bool


def trigger_principal(row: Trigger) -> Principal:
    """Who a webhook or schedule run acts as: the trigger itself, inside its workspace."""
    return Principal(
        user_id=f"trigger:{row.id}",
        token_id=f"trigger:{row.id}",
        workspace_id=row.workspace_id,
        role="editor",
        kb_ids=None,
    )


class TriggerService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        runs: RunService,
        callback_networks: Sequence[IPNetwork] = (),
        webhook_rate_per_minute: int = 60,
        schedules_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.runs = runs
        self.callback_networks = tuple(callback_networks)
        # authentic deliveries per trigger; refused ones per trigger and client address, counted apart
        self.webhook_budget = Budget.per_minute(webhook_rate_per_minute, message="too many deliveries for this webhook")
        self.refusal_budget = Budget.per_minute(
            webhook_rate_per_minute, message="too many unauthenticated deliveries for this webhook from this address"
        )
        self.on_schedule_change = schedules_changed

    # -- definitions -----------------------------------------------------------------------------

    async def _row(self, session: AsyncSession, workspace_id: str, trigger_id: str) -> Trigger:
        return await get_in_workspace(session, Trigger, trigger_id, workspace_id, "trigger")

    async def _check_agent(self, session: AsyncSession, workspace_id: str, agent_id: str) -> None:
        try:
            await get_in_workspace(session, Agent, agent_id, workspace_id, "agent")
        except NotFound:
            raise InvalidInput("agent_id names no agent of this workspace") from None

    async def _check_callback(self, url: str | None) -> None:
        if url:  # the SSRF guard at save time; delivery checks (and pins) again
            await resolve_url_async(url, allowed=self.callback_networks)

    def _apply(self, row: Trigger, fields: TriggerFields) -> None:
        for key, value in msgspec.structs.asdict(fields).items():
            if value is not None and key != "type":
                setattr(row, key, value)
        row.input_template = check_template(row.input_template)
        if row.type == "schedule":
            if not row.cron:
                raise InvalidInput("a schedule trigger needs a cron expression")
            check_cron(row.cron, row.timezone)
        elif fields.cron is not None:
            raise InvalidInput("only schedule triggers take a cron expression")
        zone(row.timezone)

    def _reschedule(self, row: Trigger) -> None:
        """A schedule counts from now whenever it is created, changed or re-enabled."""
        enabled_schedule = row.type == "schedule" and row.enabled and row.cron
        row.next_fire_at = next_fire(row.cron, row.timezone, now()) if enabled_schedule and row.cron else None

    async def create(self, principal: Principal, fields: TriggerFields) -> TriggerWithSecrets:
        if fields.type not in TRIGGER_TYPES or not fields.agent_id or not fields.name:
            raise InvalidInput(f"a trigger needs a name, an agent_id and a type ({', '.join(TRIGGER_TYPES)})")
        await self._check_callback(fields.callback_url)
        row = Trigger(
            id=new_id("trg"),
            workspace_id=principal.workspace_id,
            type=fields.type,
            input_template="{input}",
            timezone="UTC",
            enabled=True,
            created_at=now(),
            updated_at=now(),
        )
        self._apply(row, fields)
        self._reschedule(row)
        if row.type == "webhook":
            row.webhook_path, row.webhook_secret = secrets.token_urlsafe(24), webhooks.new_secret()
        row.callback_secret = webhooks.new_secret()
        async with self.sessions() as session:
            await self._check_agent(session, principal.workspace_id, row.agent_id)
            session.add(row)
            await session.commit()
        self.on_schedule_change()
        return TriggerWithSecrets(
            **msgspec.structs.asdict(TriggerInfo.of(row)),
            webhook_secret=row.webhook_secret,
            callback_secret=row.callback_secret,
        )

    async def get(self, principal: Principal, trigger_id: str) -> TriggerInfo:
        async with self.sessions() as session:
            return TriggerInfo.of(await self._row(session, principal.workspace_id, trigger_id))

    async def list(
        self, principal: Principal, *, page: int, limit: int, agent_id: str | None = None
    ) -> Page[TriggerInfo]:
        where = [Trigger.workspace_id == principal.workspace_id]
        if agent_id is not None:
            where.append(Trigger.agent_id == agent_id)
        async with self.sessions() as session:
            order = [Trigger.created_at, Trigger.id]
            total, rows = await fetch_page(session, Trigger, where, order, page=page, limit=limit)
            return Page(items=[TriggerInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def update(self, principal: Principal, trigger_id: str, fields: TriggerFields) -> TriggerInfo:
        await self._check_callback(fields.callback_url)
        async with self.sessions() as session:
            row = await self._row(session, principal.workspace_id, trigger_id)
            if fields.type is not None and fields.type != row.type:
                raise InvalidInput("a trigger's type cannot change; create a new trigger")
            if fields.agent_id is not None:
                await self._check_agent(session, principal.workspace_id, fields.agent_id)
            timing = (row.cron, row.timezone, row.enabled)
            self._apply(row, fields)
            if (row.cron, row.timezone, row.enabled) != timing:
                self._reschedule(row)
            row.updated_at = now()
            await session.commit()
        self.on_schedule_change()
        return TriggerInfo.of(row)

    async def delete(self, principal: Principal, trigger_id: str) -> None:
        async with self.sessions() as session:
            await session.delete(await self._row(session, principal.workspace_id, trigger_id))
            await session.commit()
        self.on_schedule_change()

    async def rotate_secret(self, principal: Principal, trigger_id: str, kind: str) -> TriggerWithSecrets:
        """A new webhook or callback secret (shown once); the old one stops working at once."""
        async with self.sessions() as session:
            row = await self._row(session, principal.workspace_id, trigger_id)
            secret = webhooks.new_secret()
            if kind == "webhook":
                if row.type != "webhook":
                    raise InvalidInput("only webhook triggers have a webhook secret")
                row.webhook_secret = secret
            else:
                row.callback_secret = secret
            row.updated_at = now()
            await session.commit()
            return TriggerWithSecrets(
                **msgspec.structs.asdict(TriggerInfo.of(row)),
                webhook_secret=secret if kind == "webhook" else None,
                callback_secret=secret if kind != "webhook" else None,
            )

    # -- firing ----------------------------------------------------------------------------------

    async def fire(self, row: Trigger, event: Mapping[str, Any], principal: Principal | None = None) -> str:
        """Start one run of the trigger's agent with the rendered input; returns the run id."""
        user_input = render_template(row.input_template, event) or f"Trigger {row.name} fired."
        start = RunStart(user_input=user_input, kind="trigger", agent_id=row.agent_id, trigger_id=row.id)
        return await self.runs.start(principal or trigger_principal(row), start)

    async def execute(self, principal: Principal, trigger_id: str, *, text: str, body: Any) -> str:
        """Manual execution by a member: the run is bounded by the caller's knowledge-base scope."""
        async with self.sessions() as session:
            row = await self._row(session, principal.workspace_id, trigger_id)
        if not row.enabled:
            raise InvalidInput("the trigger is disabled")
        event = {
            "input": text,
            "body": body,
            "time": datetime.now(zone(row.timezone)).isoformat(),
            "trigger": {"id": row.id, "name": row.name, "type": row.type},
        }
        return await self.fire(row, event, principal)

    async def receive_webhook(
        self, path: str, headers: Mapping[str, str], body: bytes, *, address: str | None = None
    ) -> WebhookAccepted:
        """Verify, count, check the body, de-duplicate and start one run.

        Raises ``NotFound``, ``webhooks.WebhookVerificationError`` (while the refused deliveries of this
        trigger from ``address`` are within their budget; ``RateLimited`` beyond), ``RateLimited`` (the
        trigger's budget of authentic deliveries is spent) or ``webhooks.WebhookPayloadError``. No run is
        started and the delivery id stays unused in every one of these cases.
        """
        async with self.sessions() as session:
            row = await session.scalar(select(Trigger).where(Trigger.webhook_path == path))
        if row is None or not row.enabled or row.type != "webhook" or not row.webhook_secret:
            raise NotFound("webhook")
        try:
            delivery_id = webhooks.verify(row.webhook_secret, headers, body)
        except webhooks.WebhookVerificationError:
            self.refusal_budget.take(row.id, address or "unknown")  # RateLimited once the stranger's is spent
            raise
        self.webhook_budget.take(row.id)
        payload = webhooks.parse_payload(body)
        keys = [delivery_id] + ([f"idem:{headers['idempotency-key'][:190]}"] if headers.get("idempotency-key") else [])
        seen = await self._claim_delivery(row.id, keys)
        if seen is not None:
            return WebhookAccepted(run_id=seen or None, execution_id=seen or None, duplicate=True)
        try:
            run_id = await self.fire(row, _webhook_event(row, delivery_id, body, payload))
        except BaseException:
            await self._forget_delivery(row.id, keys)  # the sender's retry may start the run later
            raise
        await self._record_delivery(row.id, keys, run_id)
        return WebhookAccepted(run_id=run_id, execution_id=run_id, duplicate=False)

    async def _claim_delivery(self, trigger_id: str, keys: Sequence[str]) -> str | None:
        """Insert the delivery keys; when any was seen before, the run id it started (else None).

        Keys older than ``DELIVERY_RETENTION_S`` are dropped first, so the table stays bounded.
        """
        async with self.sessions() as session:
            await session.execute(
                delete(WebhookDelivery).where(
                    WebhookDelivery.trigger_id == trigger_id, WebhookDelivery.received_at < now() - DELIVERY_RETENTION_S
                )
            )
            existing = await session.scalars(
                select(WebhookDelivery).where(
                    WebhookDelivery.trigger_id == trigger_id, WebhookDelivery.delivery_id.in_(list(keys))
                )
            )
            found = list(existing)
            if found:
                return next((d.run_id for d in found if d.run_id), "") or None
            session.add_all([WebhookDelivery(trigger_id=trigger_id, delivery_id=k, received_at=now()) for k in keys])
            try:
                await session.commit()
            except IntegrityError:  # a concurrent delivery of the same id won the insert
                return ""
        return None

    async def _record_delivery(self, trigger_id: str, keys: Sequence[str], run_id: str) -> None:
        async with self.sessions() as session:
            for delivery in await session.scalars(
                select(WebhookDelivery).where(
                    WebhookDelivery.trigger_id == trigger_id, WebhookDelivery.delivery_id.in_(list(keys))
                )
            ):
                delivery.run_id = run_id
            await session.commit()

    async def _forget_delivery(self, trigger_id: str, keys: Sequence[str]) -> None:
        async with self.sessions() as session:
            await session.execute(
                delete(WebhookDelivery).where(
                    WebhookDelivery.trigger_id == trigger_id, WebhookDelivery.delivery_id.in_(list(keys))
                )
            )
            await session.commit()


def _webhook_event(row: Trigger, delivery_id: str, body: bytes, payload: Any) -> dict[str, Any]:
    return {
        "input": body.decode("utf-8")[:MAX_INPUT],  # parse_payload checked that it is UTF-8
        "body": payload,
        "webhook_id": delivery_id,
        "time": datetime.now(zone(row.timezone)).isoformat(),
        "trigger": {"id": row.id, "name": row.name, "type": row.type},
    }

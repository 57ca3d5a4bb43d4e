"""Subscriptions (``/subscriptions``): signed outbound webhooks for chosen event types, with a delivery log."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post
from msgspec import Meta

from api.auth import EDITOR, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.common import Limit, PageNo
from api.schemas import Body, EventTypePatterns
from api.services.identity import Principal
from api.services.subscriptions import DeliveryInfo, SubscriptionFields, SubscriptionInfo, SubscriptionWithSecret

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Url = Annotated[str, Meta(min_length=8, max_length=2000, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://")]


class SubscriptionCreate(Body):
    name: Name
    url: Url  # checked by the SSRF guard now and on every delivery
    event_types: EventTypePatterns  # "file.*", "run.finished", "*"
    enabled: bool = True


class SubscriptionUpdate(Body):
    name: Name | None = None
    url: Url | None = None
    event_types: EventTypePatterns | None = None
    enabled: bool | None = None


def _fields(data: msgspec.Struct) -> SubscriptionFields:
    return msgspec.convert(msgspec.structs.asdict(data), SubscriptionFields)


class SubscriptionController(Controller):
    path = "/api/v1/subscriptions"
    tags = ["events"]

    @get("/", opt=VIEWER, summary="The workspace's webhook subscriptions (never their secrets)")
    async def list_subscriptions(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[SubscriptionInfo]:
        result = await services.subscriptions.list(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/", opt=EDITOR, status_code=201, summary="Subscribe a URL to event types (its secret is shown only now)")
    async def create_subscription(
        self, data: SubscriptionCreate, services: Services, principal: Principal
    ) -> Envelope[SubscriptionWithSecret]:
        return ok(await services.subscriptions.create(principal, _fields(data)), "Subscription created")

    @get("/{subscription_id:str}", opt=VIEWER, summary="Get a subscription")
    async def get_subscription(
        self, subscription_id: str, services: Services, principal: Principal
    ) -> Envelope[SubscriptionInfo]:
        return ok(await services.subscriptions.get(principal, subscription_id))

    @patch("/{subscription_id:str}", opt=EDITOR, summary="Update a subscription")
    async def update_subscription(
        self, subscription_id: str, data: SubscriptionUpdate, services: Services, principal: Principal
    ) -> Envelope[SubscriptionInfo]:
        updated = await services.subscriptions.update(principal, subscription_id, _fields(data))
        return ok(updated, "Subscription updated")

    @delete("/{subscription_id:str}", opt=EDITOR, status_code=200, summary="Delete a subscription and its log")
    async def delete_subscription(
        self, subscription_id: str, services: Services, principal: Principal
    ) -> Envelope[None]:
        await services.subscriptions.delete(principal, subscription_id)
        return ok(None, "Subscription deleted")

    @post(
        "/{subscription_id:str}/rotate-secret",
        opt=EDITOR,
        status_code=200,
        summary="A new signing secret (shown only now)",
    )
    async def rotate_subscription_secret(
        self, subscription_id: str, services: Services, principal: Principal
    ) -> Envelope[SubscriptionWithSecret]:
        return ok(await services.subscriptions.rotate_secret(principal, subscription_id), "Secret rotated")

    @get("/{subscription_id:str}/deliveries", opt=VIEWER, summary="The delivery log: every attempt, newest first")
    async def subscription_deliveries(
        self, subscription_id: str, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[DeliveryInfo]:
        result = await services.subscriptions.deliveries(principal, subscription_id, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

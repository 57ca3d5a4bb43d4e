"""Triggers (CRUD, manual execute, secret rotation), callback delivery logs, and the public webhook receiver."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import Parameter
from msgspec import Meta

from api.auth import EDITOR, PUBLIC, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, error_body, ok, page_of
from api.routes.common import Limit, PageNo
from api.schemas import Body
from api.services.callbacks import CallbackInfo
from api.services.identity import Principal
from api.services.triggers import TriggerFields, TriggerInfo, TriggerWithSecrets
from engine.webhooks import WebhookPayloadError, WebhookVerificationError

WEBHOOK_MAX_BODY = 256 * 1024
Name = Annotated[str, Meta(min_length=1, max_length=200)]
AgentId = Annotated[str, Meta(min_length=1, max_length=64)]
Template = Annotated[str, Meta(max_length=10_000)]
Cron = Annotated[str, Meta(min_length=9, max_length=120)]
TimeZone = Annotated[str, Meta(min_length=1, max_length=64)]
Url = Annotated[str, Meta(min_length=8, max_length=2000)]


class TriggerCreate(Body):
    name: Name
    agent_id: AgentId
    type: Literal["manual", "webhook", "schedule"]
    input_template: Template | None = None
    enabled: bool = True
    cron: Cron | None = None
    timezone: TimeZone | None = None
    callback_url: Url | None = None


class TriggerUpdate(Body):
    name: Name | None = None
    agent_id: AgentId | None = None
    input_template: Template | None = None
    enabled: bool | None = None
    cron: Cron | None = None
    timezone: TimeZone | None = None
    callback_url: Url | None = None


class ExecuteBody(Body):
    """Optional event data for a manual run: ``{input}`` and ``{body.…}`` in the template."""

    input: Annotated[str, Meta(max_length=100_000)] = ""
    body: dict[str, Any] | None = None


class RunStarted(msgspec.Struct, frozen=True):
    run_id: str
    execution_id: str
    status: str = "running"


class AgentCallbackSecret(msgspec.Struct, frozen=True):
    agent_id: str
    callback_secret: str


def _fields(data: msgspec.Struct) -> TriggerFields:
    return msgspec.convert(msgspec.structs.asdict(data), TriggerFields)


class TriggerController(Controller):
    path = "/api/v1/triggers"
    tags = ["triggers"]

    @post("/", opt=EDITOR, summary="Create a trigger (its webhook and callback secrets are shown only now)")
    async def create_trigger(
        self, data: TriggerCreate, services: Services, principal: Principal
    ) -> Envelope[TriggerWithSecrets]:
        return ok(await services.triggers.create(principal, _fields(data)), "Trigger created successfully")

    @get("/", opt=VIEWER, summary="List triggers")
    async def list_triggers(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20,
        agent_id: Annotated[str | None, Parameter(query="agent_id", max_length=64)] = None,
    ) -> ListEnvelope[TriggerInfo]:
        result = await services.triggers.list(principal, page=page, limit=limit, agent_id=agent_id)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/{trigger_id:str}", opt=VIEWER, summary="Get a trigger (with its next fire time)")
    async def get_trigger(self, trigger_id: str, services: Services, principal: Principal) -> Envelope[TriggerInfo]:
        return ok(await services.triggers.get(principal, trigger_id))

    @patch("/{trigger_id:str}", opt=EDITOR, summary="Update a trigger")
    async def update_trigger(
        self, trigger_id: str, data: TriggerUpdate, services: Services, principal: Principal
    ) -> Envelope[TriggerInfo]:
        return ok(await services.triggers.update(principal, trigger_id, _fields(data)), "Trigger updated")

    @delete("/{trigger_id:str}", opt=EDITOR, status_code=200, summary="Delete a trigger")
    async def delete_trigger(self, trigger_id: str, services: Services, principal: Principal) -> Envelope[None]:
        await services.triggers.delete(principal, trigger_id)
        return ok(None, "Trigger deleted")

    @post("/{trigger_id:str}/execute", opt=EDITOR, status_code=202,
          summary="Run the trigger now (follow it at /executions/{id}/stream)")
    async def execute_trigger(
        self, trigger_id: str, data: ExecuteBody, services: Services, principal: Principal
    ) -> Envelope[RunStarted]:
        run_id = await services.triggers.execute(principal, trigger_id, text=data.input, body=data.body)
        return ok(RunStarted(run_id=run_id, execution_id=run_id), "Run started")

    @post("/{trigger_id:str}/rotate-secret", opt=EDITOR, status_code=200,
          summary="New webhook or callback secret (shown once)")
    async def rotate_trigger_secret(
        self, trigger_id: str, services: Services, principal: Principal,
        kind: Annotated[Literal["webhook", "callback"], Parameter(query="kind")] = "webhook",
    ) -> Envelope[TriggerWithSecrets]:
        return ok(await services.triggers.rotate_secret(principal, trigger_id, kind), "Secret rotated")

    @get("/{trigger_id:str}/deliveries", opt=VIEWER, summary="The trigger's callback deliveries and their attempts")
    async def trigger_deliveries(
        self, trigger_id: str, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[CallbackInfo]:
        result = await services.callbacks.list(principal, page=page, limit=limit, trigger_id=trigger_id)
        return page_of(result.items, page=page, limit=limit, total=result.total)


@get("/api/v1/executions/{run_id:str}/callbacks", opt=VIEWER, tags=["executions"],
     summary="The run's callback deliveries and their attempts")
async def execution_callbacks(
    run_id: str, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
) -> ListEnvelope[CallbackInfo]:
    result = await services.callbacks.list(principal, page=page, limit=limit, run_id=run_id)
    return page_of(result.items, page=page, limit=limit, total=result.total)


@post("/api/v1/agents/{agent_id:str}/callback-secret", opt=EDITOR, status_code=200, tags=["agents"],
      summary="New secret signing the agent's run.finished callbacks (shown once)")
async def rotate_agent_callback_secret(
    agent_id: str, services: Services, principal: Principal
) -> Envelope[AgentCallbackSecret]:
    secret = await services.callbacks.rotate_agent_secret(principal, agent_id)
    return ok(AgentCallbackSecret(agent_id=agent_id, callback_secret=secret), "Secret rotated")


@post("/api/webhook/{path:str}", opt=PUBLIC, status_code=202, tags=["triggers"],
      request_max_body_size=WEBHOOK_MAX_BODY, summary="Receive a signed webhook delivery (Standard Webhooks)")
async def receive_webhook(
    path: str, request: Request[Any, Any, Any], services: Services
) -> Response[Any]:
    """The signature is checked first. Authentic deliveries: 202 (run started), 200 (a delivery id or
    Idempotency-Key seen before: no new run), 400 ``invalid_body`` (the body is not a JSON object or array,
    empty included: no run, and the id may be sent again with a corrected body) or 429 once the trigger's
    ``RAGLINE_WEBHOOK_RATE_PER_MINUTE`` is spent. Unsigned or badly signed ones: 401 ``invalid_signature``,
    then 429 once their own budget (as many per trigger and client address) is spent; they never use up the
    sender's."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    address = request.client.host if request.client else None
    try:
        accepted = await services.triggers.receive_webhook(path[:200], headers, body, address=address)
    except WebhookVerificationError as exc:
        return Response(error_body(401, "invalid_signature", str(exc)), status_code=401)
    except WebhookPayloadError as exc:
        return Response(error_body(400, "invalid_body", str(exc), error="Invalid webhook body"), status_code=400)
    if accepted.duplicate:
        return Response(ok(accepted, "Duplicate delivery: no new run"), status_code=200)
    return Response(ok(accepted, "Run started"), status_code=202)


TRIGGER_HANDLERS: list[Any] = [TriggerController, execution_callbacks, rotate_agent_callback_secret, receive_webhook]

"""Automations (``/automations``): rules that start an agent or a workflow when a matching event is stored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, delete, get, patch, post
from msgspec import Meta

from api.auth import EDITOR, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.common import Limit, PageNo
from api.schemas import Body, EventTypePatterns
from api.services.automations import AutomationFields, AutomationInfo
from api.services.identity import Principal

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Description = Annotated[str, Meta(max_length=2000)]
Condition = Annotated[str, Meta(max_length=2000)]  # an expression over the event, as `input`; "" removes it
Ident = Annotated[str, Meta(min_length=1, max_length=64)]
Template = Annotated[str, Meta(max_length=10_000)]


class AutomationCreate(Body):
    name: Name
    event_types: EventTypePatterns  # "file.*", "invoice.paid", "*"
    action: Literal["agent", "workflow"]
    description: Description = ""
    condition: Condition | None = None  # input.payload.amount > 100 and input.source == "api"
    agent_id: Ident | None = None
    workflow_id: Ident | None = None
    input_template: Template | None = None  # an agent's input: "Summarise {{ input.payload.name }}"
    input_mapping: Any = None  # a workflow's input: {"file": "{{ input.payload.file_id }}"}
    enabled: bool = True


class AutomationUpdate(Body):
    name: Name | None = None
    event_types: EventTypePatterns | None = None
    action: Literal["agent", "workflow"] | None = None
    description: Description | None = None
    condition: Condition | None = None
    agent_id: Ident | None = None
    workflow_id: Ident | None = None
    input_template: Template | None = None
    input_mapping: Any = None
    enabled: bool | None = None


def _fields(data: msgspec.Struct) -> AutomationFields:
    return msgspec.convert(msgspec.structs.asdict(data), AutomationFields)


class AutomationController(Controller):
    path = "/api/v1/automations"
    tags = ["events"]

    @get("/", opt=VIEWER, summary="The workspace's automations")
    async def list_automations(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[AutomationInfo]:
        result = await services.automations.list(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/", opt=EDITOR, status_code=201, summary="Create an automation: event types, condition, what to start")
    async def create_automation(
        self, data: AutomationCreate, services: Services, principal: Principal
    ) -> Envelope[AutomationInfo]:
        return ok(await services.automations.create(principal, _fields(data)), "Automation created")

    @get("/{automation_id:str}", opt=VIEWER, summary="Get an automation (how often it fired, its last error)")
    async def get_automation(
        self, automation_id: str, services: Services, principal: Principal
    ) -> Envelope[AutomationInfo]:
        return ok(await services.automations.get(principal, automation_id))

    @patch("/{automation_id:str}", opt=EDITOR, summary="Update an automation (condition '' removes it)")
    async def update_automation(
        self, automation_id: str, data: AutomationUpdate, services: Services, principal: Principal
    ) -> Envelope[AutomationInfo]:
        return ok(await services.automations.update(principal, automation_id, _fields(data)), "Automation updated")

    @delete("/{automation_id:str}", opt=EDITOR, status_code=200, summary="Delete an automation")
    async def delete_automation(self, automation_id: str, services: Services, principal: Principal) -> Envelope[None]:
        await services.automations.delete(principal, automation_id)
        return ok(None, "Automation deleted")

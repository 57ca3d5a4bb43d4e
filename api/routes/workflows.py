"""Workflows (``/workflows``: versioned definitions, runs) and reusable workflow steps (``/workflow-steps``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, delete, get, patch, post, put
from litestar.response import ServerSentEvent
from msgspec import Meta

from api.auth import EDITOR, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.agents import RunStarted
from api.routes.common import Limit, PageNo, VersionInPath, stream_run
from api.schemas import Body, Description, Name
from api.services.identity import Principal
from api.services.workflows import ValidationReport, WorkflowFields, WorkflowInfo, WorkflowVersionInfo
from api.services.workflows_steps import StepUsage, WorkflowStepFields, WorkflowStepInfo
from engine.types import VersionNumber
from engine.workflows import WorkflowSpec

Note = Annotated[str, Meta(max_length=2000)]
StepKind = Literal["prompt", "agent", "search", "tool", "condition", "transform", "emit"]
EntityType = Literal["event", "prompt", "action", "result"]  # seed 003's workflow entity types


class WorkflowCreate(Body):
    name: Name
    definition: WorkflowSpec  # steps, input_schema, output, output_schema, budgets
    description: Description = ""
    note: Note = ""  # about this (first) version


class WorkflowUpdate(Body):
    name: Name | None = None
    description: Description | None = None
    definition: WorkflowSpec | None = None  # saved as the next version
    note: Note = ""


class ValidateBody(Body):
    definition: WorkflowSpec


class WorkflowRunBody(Body):
    input: dict[str, Any] = {}  # checked against the definition's input_schema
    version: VersionNumber | None = None  # default: the latest
    environment: Annotated[str, Meta(min_length=1, max_length=64)] | None = None  # id or name; default: default


class WorkflowStepCreate(Body):
    name: Name
    kind: StepKind
    description: Description = ""
    entity_type: EntityType = "action"
    config: dict[str, Any] = {}  # the kind's fields (not id, after or uses)


class WorkflowStepUpdate(Body):
    name: Name | None = None
    kind: StepKind | None = None
    description: Description | None = None
    entity_type: EntityType | None = None
    config: dict[str, Any] | None = None


def _fields(data: WorkflowCreate | WorkflowUpdate) -> WorkflowFields:
    return WorkflowFields(name=data.name, description=data.description, definition=data.definition, note=data.note)


def _step_fields(data: msgspec.Struct) -> WorkflowStepFields:
    return msgspec.convert(msgspec.structs.asdict(data), WorkflowStepFields)


class WorkflowController(Controller):
    path = "/api/v1/workflows"
    tags = ["workflows"]

    @post("/", opt=EDITOR, status_code=201, summary="Create a workflow (its definition is checked: 422 lists "
                                                     "every problem)")  # fmt: skip
    async def create_workflow(
        self, data: WorkflowCreate, services: Services, principal: Principal
    ) -> Envelope[WorkflowInfo]:
        return ok(await services.workflows.create(principal, _fields(data)), "Workflow created successfully")

    @get("/", opt=VIEWER, summary="List workflows")
    async def list_workflows(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[WorkflowInfo]:
        result = await services.workflows.list(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/validate", opt=VIEWER, status_code=200, summary="Check a definition without saving it")
    async def validate_workflow(
        self, data: ValidateBody, services: Services, principal: Principal
    ) -> Envelope[ValidationReport]:
        return ok(await services.workflows.validate(principal, data.definition))

    @get("/{workflow_id:str}", opt=VIEWER, summary="Get a workflow with its latest definition")
    async def get_workflow(self, workflow_id: str, services: Services, principal: Principal) -> Envelope[WorkflowInfo]:
        return ok(await services.workflows.get(principal, workflow_id))

    @patch("/{workflow_id:str}", opt=EDITOR, summary="Update a workflow (a definition is saved as a new version)")
    async def update_workflow(
        self, workflow_id: str, data: WorkflowUpdate, services: Services, principal: Principal
    ) -> Envelope[WorkflowInfo]:
        return ok(await services.workflows.update(principal, workflow_id, _fields(data)), "Workflow updated")

    @put("/{workflow_id:str}", opt=EDITOR, summary="Update a workflow (as PATCH; seed 003's verb)")
    async def replace_workflow(
        self, workflow_id: str, data: WorkflowUpdate, services: Services, principal: Principal
    ) -> Envelope[WorkflowInfo]:
        return ok(await services.workflows.update(principal, workflow_id, _fields(data)), "Workflow updated")

    @delete("/{workflow_id:str}", opt=EDITOR, status_code=200, summary="Delete a workflow and its versions")
    async def delete_workflow(self, workflow_id: str, services: Services, principal: Principal) -> Envelope[None]:
        await services.workflows.delete(principal, workflow_id)
        return ok(None, "Workflow deleted")

    @get("/{workflow_id:str}/versions", opt=VIEWER, summary="A workflow's versions, newest first")
    async def list_workflow_versions(
        self, workflow_id: str, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[WorkflowVersionInfo]:
        result = await services.workflows.versions(principal, workflow_id, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/{workflow_id:str}/versions/{number:int}", opt=VIEWER, summary="One version of a workflow")
    async def get_workflow_version(
        self, workflow_id: str, number: VersionInPath, services: Services, principal: Principal
    ) -> Envelope[WorkflowVersionInfo]:
        return ok(await services.workflows.version(principal, workflow_id, number))

    @post("/{workflow_id:str}/run", opt=VIEWER, status_code=202,
          summary="Start a run (follow it at /executions/{id}/stream; its steps at /executions/{id})")  # fmt: skip
    async def run_workflow(
        self, workflow_id: str, data: WorkflowRunBody, services: Services, principal: Principal
    ) -> Envelope[RunStarted]:
        run_id = await services.workflows.start(
            principal, workflow_id, data.input, version=data.version, environment=data.environment
        )
        return ok(RunStarted(run_id=run_id, execution_id=run_id), "Run started")

    @post("/{workflow_id:str}/run/stream", opt=VIEWER, status_code=200,
          summary="Start a run and stream its events (SSE: step_start, its own events, step_end, …)")  # fmt: skip
    async def run_workflow_stream(
        self, workflow_id: str, data: WorkflowRunBody, services: Services, principal: Principal
    ) -> ServerSentEvent:
        run_id = await services.workflows.start(
            principal, workflow_id, data.input, version=data.version, environment=data.environment
        )
        return stream_run(services, principal, run_id, 0)


class WorkflowStepController(Controller):
    path = "/api/v1/workflow-steps"
    tags = ["workflows"]

    @post("/", opt=EDITOR, status_code=201, summary="Save a reusable workflow step (workflows name it with uses)")
    async def create_workflow_step(
        self, data: WorkflowStepCreate, services: Services, principal: Principal
    ) -> Envelope[WorkflowStepInfo]:
        created = await services.workflows.steps.create(principal, _step_fields(data))
        return ok(created, "Workflow step created successfully")

    @get("/", opt=VIEWER, summary="List reusable workflow steps with where each is used")
    async def list_workflow_steps(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[WorkflowStepInfo]:
        result = await services.workflows.steps.list(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/{workflow_step_id:str}", opt=VIEWER, summary="Get a reusable workflow step")
    async def get_workflow_step(
        self, workflow_step_id: str, services: Services, principal: Principal
    ) -> Envelope[WorkflowStepInfo]:
        return ok(await services.workflows.steps.get(principal, workflow_step_id))

    @get("/{workflow_step_id:str}/usage", opt=VIEWER, summary="The workflows and versions that use the step")
    async def workflow_step_usage(
        self, workflow_step_id: str, services: Services, principal: Principal
    ) -> Envelope[list[StepUsage]]:
        return ok((await services.workflows.steps.get(principal, workflow_step_id)).usage)

    @patch("/{workflow_step_id:str}", opt=EDITOR,
           summary="Update a reusable step (refused if it would break a workflow using it)")  # fmt: skip
    async def update_workflow_step(
        self, workflow_step_id: str, data: WorkflowStepUpdate, services: Services, principal: Principal
    ) -> Envelope[WorkflowStepInfo]:
        updated = await services.workflows.steps.update(principal, workflow_step_id, _step_fields(data))
        return ok(updated, "Workflow step updated")

    @delete("/{workflow_step_id:str}", opt=EDITOR, status_code=200,
            summary="Delete a reusable step (409 while a workflow's latest version uses it)")  # fmt: skip
    async def delete_workflow_step(
        self, workflow_step_id: str, services: Services, principal: Principal
    ) -> Envelope[None]:
        await services.workflows.steps.delete(principal, workflow_step_id)
        return ok(None, "Workflow step deleted")


WORKFLOW_HANDLERS: list[type[Controller]] = [WorkflowController, WorkflowStepController]

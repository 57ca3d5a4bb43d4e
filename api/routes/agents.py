"""Agents: CRUD and starting runs (202 + run id, or streamed over SSE)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, post, route
from litestar.response import ServerSentEvent
from msgspec import Meta

from api.auth import EDITOR, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.common import Limit, PageNo, stream_run
from api.schemas import Body, ModelName
from api.services.agents import AgentFields, AgentInfo
from api.services.identity import Principal
from api.services.runs import RunStart
from engine.types import MAX_VERSION, VersionNumber

ToolName = Annotated[str, Meta(min_length=1, max_length=64)]
KbId = Annotated[str, Meta(min_length=1, max_length=64)]
Url = Annotated[str, Meta(min_length=8, max_length=2000)]
McpServerId = Annotated[str, Meta(min_length=1, max_length=64)]
PromptKey = Annotated[str, Meta(max_length=128, pattern=r"^([A-Za-z0-9][A-Za-z0-9_.:-]*)?\Z")]  # "": unbind


AgentType = Literal["simple", "chain", "multi_agent", "workflow", "composite"]
AgentStatus = Literal["active", "inactive"]


class AgentCreate(Body):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    description: Annotated[str, Meta(max_length=10_000)] = ""
    type: AgentType = "simple"  # PromptRails' agent type; Ragline runs every type as one tool loop
    status: AgentStatus = "active"
    model_config_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None  # see /models
    model: ModelName | None = None
    instructions: Annotated[str, Meta(max_length=100_000)] = ""
    tools: Annotated[list[ToolName], Meta(max_length=20)] | None = None
    kb_ids: Annotated[list[KbId], Meta(max_length=100)] = []
    max_steps: Annotated[int, Meta(ge=1, le=50)] = 8
    max_tokens: Annotated[int, Meta(ge=1, le=2_000_000)] | None = None
    timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 120.0
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    http_fetch_enabled: bool = False
    callback_url: Url | None = None
    prompt_key: PromptKey | None = None  # instructions from this prompt's version for each run (see /prompts)
    prompt_version: VersionNumber | None = None  # pin a version (default: the live one)
    # MCP servers of the workspace (see /mcp-servers): their allowed tools are offered to the agent's runs
    mcp_servers: Annotated[list[McpServerId], Meta(max_length=20)] = []


class AgentUpdate(Body):
    name: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Meta(max_length=10_000)] | None = None
    type: AgentType | None = None
    status: AgentStatus | None = None
    model_config_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    model: ModelName | None = None
    instructions: Annotated[str, Meta(max_length=100_000)] | None = None
    tools: Annotated[list[ToolName], Meta(max_length=20)] | None = None
    kb_ids: Annotated[list[KbId], Meta(max_length=100)] | None = None
    max_steps: Annotated[int, Meta(ge=1, le=50)] | None = None
    max_tokens: Annotated[int, Meta(ge=1, le=2_000_000)] | None = None
    timeout_s: Annotated[float, Meta(gt=0, le=3600)] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    http_fetch_enabled: bool | None = None
    callback_url: Url | None = None
    prompt_key: PromptKey | None = None  # "": unbind (the agent's own instructions again)
    prompt_version: Annotated[int, Meta(ge=0, le=MAX_VERSION)] | None = None  # 0: unpin
    mcp_servers: Annotated[list[McpServerId], Meta(max_length=20)] | None = None  # []: none


class RunBody(Body):
    """The input and where to run: model, api_base and credentials come from the agent's configuration only."""

    input: Annotated[str, Meta(min_length=1, max_length=100_000)]
    environment: Annotated[str, Meta(min_length=1, max_length=64)] | None = None  # id or name; default: default
    variables: dict[str, Any] | None = None  # values for the variables of the agent's prompt (if it has one)


class RunStarted(msgspec.Struct, frozen=True):
    run_id: str
    execution_id: str
    status: str = "running"


def _fields(data: msgspec.Struct) -> AgentFields:
    return msgspec.convert(msgspec.structs.asdict(data), AgentFields)


class AgentController(Controller):
    path = "/api/v1/agents"
    tags = ["agents"]

    @post("/", opt=EDITOR, summary="Create an agent")
    async def create_agent(self, data: AgentCreate, services: Services, principal: Principal) -> Envelope[AgentInfo]:
        return ok(await services.agents.create(principal, _fields(data)), "Agent created successfully")

    @get("/", opt=VIEWER, summary="List agents")
    async def list_agents(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[AgentInfo]:
        result = await services.agents.list(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/{agent_id:str}", opt=VIEWER, summary="Get an agent")
    async def get_agent(self, agent_id: str, services: Services, principal: Principal) -> Envelope[AgentInfo]:
        return ok(await services.agents.get(principal, agent_id))

    # seed 001 updates with PUT: both are partial updates (fields left out keep their values)
    @route("/{agent_id:str}", http_method=["PATCH", "PUT"], opt=EDITOR, summary="Update an agent")
    async def update_agent(
        self, agent_id: str, data: AgentUpdate, services: Services, principal: Principal
    ) -> Envelope[AgentInfo]:
        return ok(await services.agents.update(principal, agent_id, _fields(data)), "Agent updated")

    @delete("/{agent_id:str}", opt=EDITOR, status_code=200, summary="Delete an agent")
    async def delete_agent(self, agent_id: str, services: Services, principal: Principal) -> Envelope[None]:
        await services.agents.delete(principal, agent_id)
        return ok(None, "Agent deleted")

    @post(
        "/{agent_id:str}/run", opt=VIEWER, status_code=202, summary="Start a run (follow it at /executions/{id}/stream)"
    )
    async def run_agent(
        self, agent_id: str, data: RunBody, services: Services, principal: Principal
    ) -> Envelope[RunStarted]:
        start = RunStart(
            user_input=data.input, agent_id=agent_id, environment=data.environment, variables=data.variables
        )
        run_id = await services.runs.start(principal, start)
        return ok(RunStarted(run_id=run_id, execution_id=run_id), "Run started")

    @post("/{agent_id:str}/run/stream", opt=VIEWER, status_code=200, summary="Start a run and stream its events (SSE)")
    async def run_agent_stream(
        self, agent_id: str, data: RunBody, request: Request[Any, Any, Any], services: Services, principal: Principal
    ) -> ServerSentEvent:
        start = RunStart(
            user_input=data.input, agent_id=agent_id, environment=data.environment, variables=data.variables
        )
        run_id = await services.runs.start(principal, start)
        return stream_run(services, principal, run_id, 0)

"""Prompts (seed 001's prompt runtime): CRUD and search, versions, publish, rollback, A/B rollouts, the SDK's
runtime fetch (``ETag`` / ``If-None-Match`` -> 304), the playground and prompt execution (SSE, recorded as runs of
kind ``prompt``). Viewers read, fetch and run; editors write, publish, roll back and set rollouts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put, route
from litestar.enums import MediaType
from litestar.params import Parameter
from litestar.response import ServerSentEvent
from msgspec import Meta

from api.auth import EDITOR, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.common import Limit, PageNo, VersionInPath, stream_run
from api.schemas import Body
from api.services.identity import Principal
from api.services.model_configs import PROVIDERS, ModelParams, ProviderInfo, given_params
from api.services.prompt_runtime import PromptServed, PromptSnapshot, Variant, etag_matches
from api.services.prompt_templates import PromptMessage
from api.services.prompt_views import LiveInfo, PromptFields, PromptInfo, VersionInfo
from api.services.runs import PromptRun
from engine.errors import InvalidInput
from engine.types import VersionNumber

Key = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*\Z")]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Description = Annotated[str, Meta(max_length=10_000)]
Category = Annotated[str, Meta(max_length=64)]
Tag = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:/+#-]*\Z")]
Ref = Annotated[str, Meta(min_length=1, max_length=64)]
EnvRef = Annotated[str, Meta(min_length=1, max_length=64)]  # an environment's id or name
Template = Annotated[str, Meta(max_length=100_000)]
Input = Annotated[str, Meta(min_length=1, max_length=100_000)]
VariableType = Literal["string", "number", "integer", "boolean", "array", "object"]
EnvQuery = Annotated[str | None, Parameter(query="env", min_length=1, max_length=64, required=False)]


class MessageBody(Body):
    role: Literal["system", "user", "assistant"]
    content: Template  # Jinja2: {{ name }}, {% if %}, {% for %}, filters; vars.NAME reads a workspace variable


class VariableBody(Body):
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*\Z")]
    type: VariableType = "string"
    required: bool = True  # a default (not null) makes it optional too
    default: Any = None
    description: Annotated[str, Meta(max_length=2000)] = ""


class PromptCreate(Body, kw_only=True):
    key: Key  # unique in the workspace: what SDKs (GET /sdk/prompts/{key}) and agents (prompt_key) use
    name: Name | None = None  # default: the key
    description: Description = ""
    category: Category = ""
    tags: Annotated[list[Tag], Meta(max_length=32)] = []
    messages: Annotated[list[MessageBody], Meta(min_length=1, max_length=50)]
    variables: Annotated[list[VariableBody], Meta(max_length=100)] = []
    model_config_id: Ref | None = None  # see /models
    params: ModelParams | None = None
    output_format: Literal["text", "json"] = "text"
    output_schema: dict[str, Any] | None = None  # a JSON Schema of the JSON output


class PromptUpdate(Body):
    key: Key | None = None
    name: Name | None = None
    description: Description | None = None
    category: Category | None = None
    tags: Annotated[list[Tag], Meta(max_length=32)] | None = None
    messages: Annotated[list[MessageBody], Meta(min_length=1, max_length=50)] | None = None
    variables: Annotated[list[VariableBody], Meta(max_length=100)] | None = None
    model_config_id: Annotated[str, Meta(max_length=64)] | None = None  # "": none
    params: ModelParams | None = None
    output_format: Literal["text", "json"] | None = None
    output_schema: dict[str, Any] | None = None


class PublishBody(Body):
    env: EnvRef | None = None  # where the new version goes live (default: the default environment)
    note: Annotated[str, Meta(max_length=2000)] = ""


class RollbackBody(Body, kw_only=True):
    version: VersionNumber
    env: EnvRef | None = None


class PublishByIdBody(PublishBody):
    """Seed 001's ``POST /prompts/publish``: the prompt named in the body (``id`` or ``prompt_id``)."""

    id: Ref | None = None
    prompt_id: Ref | None = None


class RollbackByIdBody(RollbackBody, kw_only=True):
    """Seed 001's ``POST /prompts/rollback``: the prompt named in the body (``id`` or ``prompt_id``)."""

    id: Ref | None = None
    prompt_id: Ref | None = None


def _named(data: PublishByIdBody | RollbackByIdBody) -> str:
    if data.id and data.prompt_id and data.id != data.prompt_id:
        raise InvalidInput("id and prompt_id name different prompts: give one")
    prompt_id = data.id or data.prompt_id
    if not prompt_id:
        raise InvalidInput("name the prompt: id (or prompt_id) is required")
    return prompt_id


class VariantBody(Body):
    version: VersionNumber
    weight: Annotated[int, Meta(ge=0, le=100)]


class RolloutBody(Body, kw_only=True):
    variants: Annotated[list[VariantBody], Meta(min_length=1, max_length=10)]  # weights sum to 100
    env: EnvRef | None = None  # or ?env=


class ExecuteBody(Body):
    variables: dict[str, Any] = {}
    input: Input | None = None  # a last user message (needed when the prompt does not end with one)
    env: EnvRef | None = None
    version: VersionNumber | None = None  # default: the live version (or the rollout's pick)
    assignment_key: Annotated[str, Meta(min_length=1, max_length=200)] | None = None  # default: the caller's id


class PlaygroundBody(Body):
    """A saved prompt's draft (``prompt_id``) or version (+ ``version``), or inline ``messages`` / ``text``."""

    prompt_id: Ref | None = None
    version: VersionNumber | None = None
    messages: Annotated[list[MessageBody], Meta(min_length=1, max_length=50)] | None = None
    text: Template | None = None  # one user message
    variables: dict[str, Any] = {}
    input: Input | None = None
    env: EnvRef | None = None
    model_config_id: Ref | None = None  # the model configuration to call (default: the prompt's, else the server's)
    params: ModelParams | None = None


def _fields(data: msgspec.Struct) -> PromptFields:
    return msgspec.convert(msgspec.to_builtins(data), PromptFields)


def _params(data: ModelParams | None) -> dict[str, Any] | None:
    return None if data is None else given_params(data)


class PromptController(Controller):
    path = "/api/v1/prompts"
    tags = ["prompts"]

    @get("/", opt=VIEWER, summary="List and search prompts")
    async def list_prompts(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20,
        q: Annotated[str | None, Parameter(query="q", max_length=200, required=False)] = None,
        category: Annotated[str | None, Parameter(query="category", max_length=64, required=False)] = None,
        tag: Annotated[str | None, Parameter(query="tag", max_length=64, required=False)] = None,
        environment: Annotated[str | None, Parameter(query="environment", max_length=64, required=False)] = None,
        env: EnvQuery = None,
    ) -> ListEnvelope[PromptInfo]:  # fmt: skip
        result = await services.prompts.list(
            principal, q=q, category=category, tag=tag, environment=environment or env, page=page, limit=limit
        )
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/", opt=EDITOR, status_code=201, summary="Create a prompt (its draft)")
    async def create_prompt(self, data: PromptCreate, services: Services, principal: Principal) -> Envelope[PromptInfo]:
        return ok(await services.prompts.create(principal, _fields(data)), "Prompt created successfully")

    @get("/{prompt_id:str}", opt=VIEWER, summary="Get a prompt: its draft and its live version per environment")
    async def get_prompt(self, prompt_id: str, services: Services, principal: Principal) -> Envelope[PromptInfo]:
        return ok(await services.prompts.get(principal, prompt_id))

    # seed 001 edits with PUT: both are partial updates (fields left out keep their values)
    @route("/{prompt_id:str}", http_method=["PATCH", "PUT"], opt=EDITOR,
           summary="Edit a prompt's details or draft (versions never change)")  # fmt: skip
    async def update_prompt(
        self, prompt_id: str, data: PromptUpdate, services: Services, principal: Principal
    ) -> Envelope[PromptInfo]:
        return ok(await services.prompts.update(principal, prompt_id, _fields(data)), "Prompt updated")

    @delete("/{prompt_id:str}", opt=EDITOR, status_code=200, summary="Delete a prompt and its versions")
    async def delete_prompt(self, prompt_id: str, services: Services, principal: Principal) -> Envelope[None]:
        await services.prompts.delete(principal, prompt_id)
        return ok(None, "Prompt deleted")

    @post("/{prompt_id:str}/publish", opt=EDITOR, status_code=201,
          summary="Snapshot the draft as the next version and make it live in an environment")  # fmt: skip
    async def publish_prompt(
        self, prompt_id: str, data: PublishBody, services: Services, principal: Principal
    ) -> Envelope[VersionInfo]:
        version = await services.prompts.publish(principal, prompt_id, data.env, data.note)
        return ok(version, f"Version {version.number} published")

    @post("/publish", opt=EDITOR, status_code=201, summary="Publish the prompt named in the body (seed 001's shape)")
    async def publish_named(
        self, data: PublishByIdBody, services: Services, principal: Principal
    ) -> Envelope[VersionInfo]:
        version = await services.prompts.publish(principal, _named(data), data.env, data.note)
        return ok(version, f"Version {version.number} published")

    @post("/rollback", opt=EDITOR, status_code=200, summary="Roll back the prompt named in the body (seed 001's shape)")
    async def rollback_named(
        self, data: RollbackByIdBody, services: Services, principal: Principal
    ) -> Envelope[LiveInfo]:
        live = await services.prompts.rollback(principal, _named(data), data.env, data.version)
        return ok(live, f"Version {data.version} is live in {live.environment}")

    @get("/{prompt_id:str}/versions", opt=VIEWER, summary="A prompt's versions, newest first")
    async def list_versions(
        self, prompt_id: str, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[VersionInfo]:
        result = await services.prompts.versions(principal, prompt_id, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/{prompt_id:str}/versions/{number:int}", opt=VIEWER, summary="Get one version of a prompt")
    async def get_version(
        self, prompt_id: str, number: VersionInPath, services: Services, principal: Principal
    ) -> Envelope[VersionInfo]:
        return ok(await services.prompts.version(principal, prompt_id, number))

    @post("/{prompt_id:str}/rollback", opt=EDITOR, status_code=200,
          summary="Make an earlier version live again in an environment (history is kept)")  # fmt: skip
    async def rollback_prompt(
        self, prompt_id: str, data: RollbackBody, services: Services, principal: Principal
    ) -> Envelope[LiveInfo]:
        live = await services.prompts.rollback(principal, prompt_id, data.env, data.version)
        return ok(live, f"Version {data.version} is live in {live.environment}")

    @get("/{prompt_id:str}/rollout", opt=VIEWER, summary="An environment's live version and A/B rollout")
    async def get_rollout(
        self, prompt_id: str, services: Services, principal: Principal, env: EnvQuery = None
    ) -> Envelope[LiveInfo]:
        return ok(await services.prompts.rollout(principal, prompt_id, env))

    @put("/{prompt_id:str}/rollout", opt=EDITOR,
         summary="Split an environment between versions by weight (sticky per assignment_key)")  # fmt: skip
    async def set_rollout(
        self, prompt_id: str, data: RolloutBody, services: Services, principal: Principal, env: EnvQuery = None
    ) -> Envelope[LiveInfo]:
        variants = [Variant(version=v.version, weight=v.weight) for v in data.variants]
        return ok(await services.prompts.set_rollout(principal, prompt_id, data.env or env, variants), "Rollout set")

    @delete("/{prompt_id:str}/rollout", opt=EDITOR, status_code=200,
            summary="End an environment's rollout (everyone gets the live version)")  # fmt: skip
    async def delete_rollout(
        self, prompt_id: str, services: Services, principal: Principal, env: EnvQuery = None
    ) -> Envelope[LiveInfo]:
        return ok(await services.prompts.set_rollout(principal, prompt_id, env, None), "Rollout ended")

    @post("/{prompt_id:str}/execute", opt=VIEWER, status_code=200,
          summary="Render the live (or a given) version and call its model; streams the run (SSE)")  # fmt: skip
    async def execute_prompt(
        self, prompt_id: str, data: ExecuteBody, services: Services, principal: Principal
    ) -> ServerSentEvent:
        environment = await services.environments.resolve(principal.workspace_id, data.env)
        resolved = await services.prompts.resolve_by_id(
            principal, prompt_id, environment_id=environment.id,
            assignment_key=data.assignment_key or principal.user_id, pinned=data.version,
        )  # fmt: skip
        run = PromptRun(
            name=resolved.key, snapshot=resolved.snapshot, variables=data.variables, user_input=data.input,
            environment=environment.id, prompt_id=resolved.prompt_id, prompt_version=resolved.version,
        )  # fmt: skip
        return stream_run(services, principal, await services.runs.start_prompt(principal, run))


class SdkController(Controller):
    path = "/api/v1/sdk"
    tags = ["prompts"]

    @get("/prompts/{key:str}", opt=VIEWER, summary="Runtime fetch: the version to use (honours rollouts)",
         description="Answers with a strong ETag over the served version and rollout state; send it back as "
         "If-None-Match to get 304 Not Modified while nothing changed. Cache-Control: private, no-cache.")  # fmt: skip
    async def fetch_prompt(
        self, key: str, request: Request[Any, Any, Any], services: Services, principal: Principal,
        env: EnvQuery = None,
        assignment_key: Annotated[str | None, Parameter(query="assignment_key", max_length=200, required=False)] = None,
    ) -> Response[Envelope[PromptServed]]:  # fmt: skip
        served = await services.prompts.runtime.fetch(principal.workspace_id, key, env, assignment_key)
        headers = {"ETag": served.etag, "Cache-Control": "private, no-cache"}
        if etag_matches(request.headers.get("if-none-match"), served.etag):
            return Response(content=cast(Any, b""), status_code=304, headers=headers)
        return Response(content=cast(Any, served.body), headers=headers, media_type=MediaType.JSON)


class PlaygroundController(Controller):
    path = "/api/v1/playground"
    tags = ["prompts"]

    @get("/providers", opt=VIEWER, summary="The kinds of model that can be configured (as /models/providers)")
    async def playground_providers(self) -> Envelope[list[ProviderInfo]]:
        return ok(PROVIDERS)

    @post("/run", opt=VIEWER, status_code=200,
          summary="Render a prompt (draft, version or inline text), call a model; streams the run (SSE)")  # fmt: skip
    async def playground_run(self, data: PlaygroundBody, services: Services, principal: Principal) -> ServerSentEvent:
        inline = data.messages is not None or data.text is not None
        if inline == (data.prompt_id is not None):
            raise InvalidInput("give either prompt_id (with an optional version) or inline messages or text")
        prompt_id, version, name = data.prompt_id, data.version, "playground"
        if data.prompt_id is not None and data.version is not None:
            environment = await services.environments.resolve(principal.workspace_id, data.env)
            resolved = await services.prompts.resolve_by_id(
                principal, data.prompt_id, environment_id=environment.id, assignment_key=None, pinned=data.version
            )
            snapshot, name = resolved.snapshot, resolved.key
        elif data.prompt_id is not None:
            row, snapshot = await services.prompts.draft(principal, data.prompt_id)
            name = row.key
        else:
            messages = [PromptMessage(role=m.role, content=m.content) for m in data.messages or []]
            if data.text is not None:
                messages.append(PromptMessage(role="user", content=data.text))
            snapshot = PromptSnapshot(messages=messages, variables=[], model_config_id=None, params={},
                                      output_format="text", output_schema=None)  # fmt: skip
        run = PromptRun(
            name=name, snapshot=snapshot, variables=data.variables, user_input=data.input, environment=data.env,
            inline=inline, model_config_id=data.model_config_id, params=_params(data.params), prompt_id=prompt_id,
            prompt_version=version,
        )  # fmt: skip
        return stream_run(services, principal, await services.runs.start_prompt(principal, run))


PROMPT_HANDLERS: list[type[Controller]] = [PromptController, SdkController, PlaygroundController]

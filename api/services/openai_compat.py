"""OpenAI-compatible chat: what ``model`` may name, starting the run (OpenAI's wire shapes for its events:
``api.services.openai_compat_shapes``).

``model`` names one of (``GET /v1/models`` lists the canonical ids):

* ``ragline/assistant``: the built-in knowledge assistant over every knowledge base the caller may read;
* ``agent:<agent id>`` (or ``agent:<name>``): an active agent of the workspace;
* ``model:<configuration id>`` (or ``model:<name>``): a model configuration of the workspace or a system model,
  called bare (no tools, no knowledge; the request's system messages are its instructions). A workspace's own
  configuration shadows a system model of the same name;
* a bare agent id, configuration id or name, when exactly one agent or configuration answers to it.

Every completion is a recorded run of kind ``chat`` (no session: the client keeps the conversation): agents and
the assistant start through ``RunService.start``. Nothing in the request chooses an endpoint or a credential:
``api_base``, ``base_url``, ``api_key`` and the like are refused, and no request field is ever handed to a model
client. Extensions to OpenAI's shapes are prefixed ``ragline_`` (``ragline_run_id``, ``ragline_citations``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from api.services.runs import RunService, RunStart
from engine.db.models import Agent, ModelConfig
from engine.llm import Message
from engine.runs import RunManager

ASSISTANT = "ragline/assistant"
AGENT_PREFIX = "agent:"
MODEL_PREFIX = "model:"
# request fields that would redirect the call or its credentials: refused, never read
FORBIDDEN_FIELDS = (
    "api_base", "base_url", "api_key", "api_version", "custom_llm_provider", "organization_id", "extra_headers",
    "extra_body",
)  # fmt: skip
MAX_LISTED = 10_000  # agents and configurations listed by GET /v1/models


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "code", "param"}}``."""

    def __init__(
        self, status: int, message: str, *, code: str, param: str | None = None, type: str | None = None,
        headers: dict[str, str] | None = None, run_id: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or error_type(status)
        self.headers = dict(headers or {})
        self.run_id = run_id

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code, "param": self.param}
        if self.run_id is not None:
            error["ragline_run_id"] = self.run_id
        return {"error": error}


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def model_not_found(name: str) -> OpenAIError:
    return OpenAIError(
        404, f"The model '{name}' does not exist or you do not have access to it.", code="model_not_found",
        param="model",
    )  # fmt: skip


# -- the request ---------------------------------------------------------------------------------------------


class ContentPart(msgspec.Struct, kw_only=True):
    type: str
    text: str | None = None


class ChatMessageIn(msgspec.Struct, kw_only=True):
    """One message of ``messages``; ``tool_calls``, ``name`` and other fields are accepted and ignored."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | Annotated[list[ContentPart], Meta(max_length=100)] | None = None


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, kw_only=True):
    """OpenAI's request body. Unknown fields are accepted and ignored (clients send many: ``user``, ``seed``, ...);
    the credential and endpoint fields of ``FORBIDDEN_FIELDS`` are refused."""

    model: Annotated[str, Meta(min_length=1, max_length=300)]
    messages: Annotated[list[ChatMessageIn], Meta(min_length=1, max_length=1000)]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    # refused when present (any value): the endpoint and its credentials come from the server's configuration
    api_base: Any = msgspec.UNSET
    base_url: Any = msgspec.UNSET
    api_key: Any = msgspec.UNSET
    api_version: Any = msgspec.UNSET
    custom_llm_provider: Any = msgspec.UNSET
    organization_id: Any = msgspec.UNSET
    extra_headers: Any = msgspec.UNSET
    extra_body: Any = msgspec.UNSET


class Conversation(msgspec.Struct, frozen=True, kw_only=True):
    """``messages`` as a run takes them: the system text, the earlier turns and the last user message."""

    system: str
    history: tuple[Message, ...]
    user_input: str


def check_request(body: ChatCompletionRequest) -> Conversation:
    """Refuse what Ragline cannot honour (or must never use); returns the conversation. Raises ``OpenAIError``."""
    for name in FORBIDDEN_FIELDS:
        if getattr(body, name) is not msgspec.UNSET:
            raise OpenAIError(
                400, f"'{name}' cannot be set by a request: the model's endpoint and credentials come from the "
                "server's configuration", code="unsupported_parameter", param=name,
            )  # fmt: skip
    if body.n not in (None, 1):
        raise OpenAIError(400, "only n=1 is supported", code="unsupported_value", param="n")
    for name in ("tools", "functions"):
        if getattr(body, name):
            raise OpenAIError(
                400, f"'{name}' is not supported: agents call their own server-side tools",
                code="unsupported_parameter", param=name,
            )  # fmt: skip
    return conversation(body.messages)


def _text(message: ChatMessageIn, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    parts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise OpenAIError(
                400, f"only text content is supported (messages[{index}] has a '{part.type}' part)",
                code="unsupported_content", param=f"messages[{index}].content",
            )  # fmt: skip
        parts.append(part.text)
    return "\n".join(parts)


def conversation(messages: Sequence[ChatMessageIn]) -> Conversation:
    """System and developer messages make the system text; user and assistant messages before the last one are
    the history; tool and function messages are dropped (tools run on the server); the last must be the user's."""
    last = messages[-1]
    if last.role != "user":
        raise OpenAIError(400, "the last message must be the user's", code="invalid_value", param="messages")
    user_input = _text(last, len(messages) - 1)
    if not user_input.strip():
        raise OpenAIError(400, "the last user message is empty", code="invalid_value", param="messages")
    system: list[str] = []
    history: list[Message] = []
    for index, message in enumerate(messages[:-1]):
        text = _text(message, index)
        if message.role in ("system", "developer"):
            system.append(text)
        elif message.role in ("user", "assistant") and text:
            history.append(Message(role=message.role, content=text))
    return Conversation(
        system="\n\n".join(s for s in system if s.strip()), history=tuple(history), user_input=user_input
    )


# -- what ``model`` may name ---------------------------------------------------------------------------------


class ModelEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One ``GET /v1/models`` item: OpenAI's fields plus ``ragline_kind`` and ``ragline_name``."""

    id: str
    object: str = "model"
    created: int
    owned_by: str
    ragline_kind: Literal["assistant", "agent", "model"]
    ragline_name: str


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """What a completion runs: the assistant, an agent or a model configuration (``ref``: its id)."""

    kind: Literal["assistant", "agent", "model"]
    id: str  # the canonical model id (``agent:agt_…``)
    ref: str | None = None
    name: str = "assistant"


class OpenAICompatService:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], runs: RunService, manager: RunManager
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.runs = runs
        self.manager = manager

    async def models(self, principal: Principal) -> list[ModelEntry]:
        """The assistant, the workspace's active agents, its model configurations and the system models."""
        entries = [ModelEntry(id=ASSISTANT, created=0, owned_by="ragline", ragline_kind="assistant",
                              ragline_name="assistant")]  # fmt: skip
        async with self.sessions() as session:
            agents = await session.execute(
                select(Agent.id, Agent.name, Agent.created_at)
                .where(Agent.workspace_id == principal.workspace_id, Agent.status == "active")
                .order_by(Agent.created_at, Agent.id)
                .limit(MAX_LISTED)
            )
            configs = await session.execute(
                select(ModelConfig.id, ModelConfig.name, ModelConfig.created_at, ModelConfig.workspace_id)
                .where(or_(ModelConfig.workspace_id == principal.workspace_id, ModelConfig.workspace_id.is_(None)))
                .order_by(ModelConfig.workspace_id.is_(None), ModelConfig.name, ModelConfig.id)
                .limit(MAX_LISTED)
            )
            entries += [
                ModelEntry(id=AGENT_PREFIX + ident, created=int(created), owned_by=principal.workspace_id,
                           ragline_kind="agent", ragline_name=name)
                for ident, name, created in agents
            ]  # fmt: skip
            entries += [
                ModelEntry(id=MODEL_PREFIX + ident, created=int(created), owned_by=owner or "system",
                           ragline_kind="model", ragline_name=name)
                for ident, name, created, owner in configs
            ]  # fmt: skip
        return entries

    async def resolve(self, principal: Principal, name: str) -> Target:
        """The target ``name`` names. Raises ``OpenAIError`` (404 ``model_not_found``, 400 ``model_ambiguous``)."""
        if name == ASSISTANT:
            return Target(kind="assistant", id=ASSISTANT)
        kinds: tuple[str, ...] = ("agent", "model")
        key = name
        for kind, prefix in (("agent", AGENT_PREFIX), ("model", MODEL_PREFIX)):
            if name.startswith(prefix):
                kinds, key = (kind,), name[len(prefix) :]
        found: list[Target] = []
        async with self.sessions() as session:
            if "agent" in kinds:
                found += await self._agents(session, principal, key)
            if "model" in kinds:
                found += await self._configs(session, principal, key)
        exact = [t for t in found if t.ref == key]  # an id beats a name
        found = exact or found
        if not found:
            raise model_not_found(name)
        if len(found) > 1:
            ids = ", ".join(t.id for t in found[:5])
            raise OpenAIError(400, f"'{name}' names more than one agent or model configuration; use one of: {ids}",
                              code="model_ambiguous", param="model")  # fmt: skip
        return found[0]

    @staticmethod
    async def _agents(session: AsyncSession, principal: Principal, key: str) -> list[Target]:
        rows = await session.execute(
            select(Agent.id, Agent.name)
            .where(Agent.workspace_id == principal.workspace_id, or_(Agent.id == key, Agent.name == key))
            .limit(6)
        )
        return [Target(kind="agent", id=AGENT_PREFIX + ident, ref=ident, name=agent) for ident, agent in rows]

    @staticmethod
    async def _configs(session: AsyncSession, principal: Principal, key: str) -> list[Target]:
        rows = list(await session.execute(
            select(ModelConfig.id, ModelConfig.name, ModelConfig.workspace_id).where(
                or_(ModelConfig.workspace_id == principal.workspace_id, ModelConfig.workspace_id.is_(None)),
                or_(ModelConfig.id == key, ModelConfig.name == key),
            ).limit(6)
        ))  # fmt: skip
        if any(owner is not None for _, _, owner in rows):  # the workspace's own shadows a system model's name
            rows = [row for row in rows if row[2] is not None or row[0] == key]
        return [Target(kind="model", id=MODEL_PREFIX + ident, ref=ident, name=config) for ident, config, _ in rows]

    async def start(
        self, principal: Principal, target: Target, chat: Conversation, *, temperature: float | None
    ) -> str:
        """Start the run (recorded, kind ``chat``); returns its id. Agents and the assistant keep their own
        instructions and sampling; a model configuration takes the request's system text and temperature."""
        if target.kind != "model":
            start = RunStart(
                user_input=chat.user_input, kind="chat", agent_id=target.ref, history=chat.history,
            )  # fmt: skip
            return await self.runs.start(principal, start)
        assert target.ref is not None
        return await self._start_model(principal, target, chat, temperature)

    async def _start_model(
        self, principal: Principal, target: Target, chat: Conversation, temperature: float | None
    ) -> str:
        """A model configuration called bare, through the one run path (the client's system text is never
        searched for ``{{vars.NAME}}``: server-side variables are for instructions the workspace wrote)."""
        assert target.ref is not None
        start = RunStart(
            user_input=chat.user_input, kind="chat", history=chat.history, model_config_id=target.ref,
            system=chat.system, temperature=temperature, name=target.name,
        )  # fmt: skip
        return await self.runs.start(principal, start)

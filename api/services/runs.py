"""One run path: chat, assistant, agent and trigger runs all start here.

``RunService.start`` turns what a caller asks for (``RunStart``) into an ``engine.runs.RunRequest``: the
agent's definition (or the built-in assistant's), the knowledge bases the caller may read, the tools, the
model client by name (``ModelProvider``), and the finished hooks (the caller's own, plus signed callbacks
for agent and trigger runs).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from api.services.agents import AgentInfo, AgentService
from api.services.callbacks import CallbackService
from api.services.environments import EnvironmentService
from api.services.identity import Principal
from api.services.model_configs import ModelConfigService
from api.services.variables import VariableService, references, substitute
from engine.agent.registry import build_tools
from engine.agent.spec import KNOWLEDGE_SEARCH, AgentSpec
from engine.db.audit import audit_scope
from engine.errors import Conflict, NotFound
from engine.llm import Message
from engine.ports import ModelProvider, Tool
from engine.retrieval import Retriever
from engine.runs import FinishedHook, RunKind, RunManager, RunRequest
from ingest.service import KnowledgeService

ASSISTANT_INSTRUCTIONS = (
    "You are Ragline's knowledge assistant. Answer from the knowledge bases only: call knowledge_search, "
    "then answer concisely and cite the passages you used with their numbers in square brackets, like [1]. "
    "If the passages do not contain the answer, say so."
)


class RunStart(msgspec.Struct, frozen=True, kw_only=True):
    """What a caller asks to run: an agent, or the built-in assistant when ``agent_id`` is ``None``."""

    user_input: str
    kind: RunKind = "agent"
    agent_id: str | None = None
    kb_ids: tuple[str, ...] | None = None  # the assistant's knowledge (None: every base the caller may read)
    history: tuple[Message, ...] = ()
    session_id: str | None = None
    user_message_id: str | None = None
    trigger_id: str | None = None
    environment: str | None = None  # an environment's id or name (default: the workspace's default)


class RunService:
    def __init__(
        self,
        *,
        manager: RunManager,
        models: ModelProvider,
        agents: AgentService,
        knowledge: KnowledgeService,
        retriever: Retriever,
        callbacks: CallbackService,
        environments: EnvironmentService,
        variables: VariableService,
        model_configs: ModelConfigService,
        default_model: str,
    ) -> None:
        self.manager = manager
        self.models = models
        self.agents = agents
        self.knowledge = knowledge
        self.retriever = retriever
        self.callbacks = callbacks
        self.environments = environments
        self.variables = variables
        self.model_configs = model_configs
        self.default_model = default_model

    async def start(self, principal: Principal, start: RunStart, *, on_finish: Sequence[FinishedHook] = ()) -> str:
        """Start the run in the background; returns its id (the run is recorded when this returns)."""
        environment = await self.environments.resolve(principal.workspace_id, start.environment)
        endpoint = None
        if start.agent_id is not None:
            agent = await self.agents.get(principal, start.agent_id)
            if agent.status != "active":
                raise Conflict(f"agent {agent.name!r} is {agent.status}: activate it to run it")
            spec, tools = self._agent_plan(principal, agent)
            if agent.model_config_id:  # the configuration's model, endpoint and credentials, never a request's
                endpoint = await self.model_configs.endpoint(principal.workspace_id, agent.model_config_id)
                spec = msgspec.structs.replace(spec, model=endpoint.model)
        else:
            spec, tools = await self._assistant_plan(principal, start.kb_ids)
        names = references(spec.instructions)
        if names:  # {{vars.NAME}}: resolved here, on the server, from the run's environment
            values = await self.variables.values(principal.workspace_id, environment.id, names)
            spec = msgspec.structs.replace(spec, instructions=substitute(spec.instructions, values))
        model = self.models.get_model(spec.model, endpoint)
        hooks = list(on_finish)
        if start.kind != "chat":  # run.finished callbacks go to agents' and triggers' subscribers
            hooks += self.callbacks.hooks_for(start.agent_id, start.trigger_id)
        request = RunRequest(
            spec=spec, user_input=start.user_input, workspace_id=principal.workspace_id, kind=start.kind,
            history=start.history, agent_id=start.agent_id, session_id=start.session_id,
            user_message_id=start.user_message_id, trigger_id=start.trigger_id, user_id=principal.user_id,
            environment_id=environment.id,
        )  # fmt: skip
        quiet = audit_scope.set(None)  # a run's writes are its own record, not configuration changes to audit
        try:
            return await self.manager.start(request, model=model, tools=tools, on_finish=hooks)
        finally:
            audit_scope.reset(quiet)

    async def readable_kbs(self, principal: Principal, requested: Sequence[str] | None = None) -> tuple[str, ...]:
        """``requested`` checked (an unreadable one is ``NotFound``), or every base the caller may read."""
        readable = [kb for kb in await self.knowledge.kb_ids(principal.workspace_id) if principal.allows_kb(kb)]
        if requested is None:
            return tuple(readable)
        for kb in requested:
            if kb not in readable:
                raise NotFound("knowledge base", kb)
        return tuple(dict.fromkeys(requested))

    def _agent_plan(self, principal: Principal, agent: AgentInfo) -> tuple[AgentSpec, list[Tool]]:
        """The agent's knowledge is its knowledge bases that the caller's token may read."""
        spec = AgentSpec(
            name=agent.name, model=agent.model, instructions=agent.instructions, tools=tuple(agent.tools),
            kb_ids=principal.narrow_kbs(agent.kb_ids) or (), max_steps=agent.max_steps, max_tokens=agent.max_tokens,
            timeout_s=agent.timeout_s, temperature=agent.temperature,
        )  # fmt: skip
        return spec, build_tools(spec, searcher=self.retriever, http_fetch_enabled=agent.http_fetch_enabled)

    async def _assistant_plan(
        self, principal: Principal, kb_ids: Sequence[str] | None
    ) -> tuple[AgentSpec, list[Tool]]:
        spec = AgentSpec(
            name="assistant", model=self.default_model, instructions=ASSISTANT_INSTRUCTIONS,
            tools=(KNOWLEDGE_SEARCH,), kb_ids=await self.readable_kbs(principal, kb_ids),
        )  # fmt: skip
        return spec, build_tools(spec, searcher=self.retriever)

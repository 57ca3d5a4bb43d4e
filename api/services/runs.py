"""One run path: chat, assistant, agent, trigger and prompt runs all start here.

``RunService.start`` turns what a caller asks for (``RunStart``) into an ``engine.runs.RunRequest``: the
agent's definition (or the built-in assistant's), the knowledge bases the caller may read, the tools, the
model client by name (``ModelProvider``), and the finished hooks (the caller's own, plus signed callbacks
for agent and trigger runs). An agent bound to a prompt (``prompt_key``) takes its instructions from the
prompt's version for the run (pinned, else live in the run's environment, the rollout's pick for the run's
session or user): its system messages, rendered, are the instructions; its other messages come before the
conversation. ``RunService.start_prompt`` runs a prompt itself (playground, ``/prompts/{id}/execute``):
rendered messages, no tools, one model call, recorded as a run of kind ``prompt``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import msgspec

from api.services.agents import AgentInfo, AgentService
from api.services.callbacks import CallbackService
from api.services.environments import EnvironmentService
from api.services.events_hooks import RunEvents
from api.services.identity import Principal
from api.services.mcp_servers import McpServerService
from api.services.model_configs import ModelConfigService
from api.services.prompt_runtime import PromptSnapshot
from api.services.prompt_templates import PromptMessage, bind_values, check_messages, render
from api.services.prompts import PromptService
from api.services.variables import VariableService, references, substitute
from engine.agent.mcp_tools import load_mcp_tools, with_notes
from engine.agent.registry import build_tools
from engine.agent.spec import KNOWLEDGE_SEARCH, AgentSpec
from engine.db.audit import audit_scope
from engine.errors import Conflict, InvalidInput, NotFound
from engine.llm import Message, ModelEndpoint
from engine.ports import ModelClient, ModelProvider, Tool
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
    variables: Mapping[str, Any] | None = None  # values for the variables of the agent's prompt
    model_config_id: str | None = None  # a model configuration called directly (no agent): with these three
    system: str | None = None  # the caller's system text
    temperature: float | None = None
    name: str | None = None  # shown as the run's agent
    event_id: str | None = None  # the workspace event that caused it (an automation's run)
    event_depth: int = 0  # automation hops that led here (loops stop at a limit)


@dataclass
class _Plan:
    """What a run is started with, before variables are resolved."""

    spec: AgentSpec
    tools: list[Tool]
    history: tuple[Message, ...]
    endpoint: ModelEndpoint | None = None
    prompt_id: str | None = None
    prompt_version: int | None = None
    resolve_vars: bool = True  # {{vars.NAME}} in instructions the workspace wrote
    notes: list[str] = dataclasses.field(default_factory=list)  # said first, as thinking (MCP servers left out)


class PromptRun(msgspec.Struct, frozen=True, kw_only=True):
    """A prompt to render and run once: a version, a draft or inline text (``inline``: no workspace variables)."""

    name: str  # shown as the run's agent
    snapshot: PromptSnapshot
    variables: Mapping[str, Any] = {}
    user_input: str | None = None  # appended as the last user message
    environment: str | None = None
    inline: bool = False
    model_config_id: str | None = None  # instead of the snapshot's
    params: Mapping[str, Any] | None = None  # over the snapshot's
    prompt_id: str | None = None
    prompt_version: int | None = None


JSON_OUTPUT = "Answer with one JSON value only: no prose, no code fences."


@dataclass(frozen=True)
class Prepared:
    """A run ready to start: the request, its model client and its tools."""

    request: RunRequest
    model: ModelClient
    tools: list[Tool]


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
        prompts: PromptService,
        default_model: str,
        mcp_servers: McpServerService | None = None,
        run_events: RunEvents | None = None,
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
        self.prompts = prompts
        self.default_model = default_model
        self.mcp_servers = mcp_servers
        self.run_events = run_events  # run.started / run.finished into the workspace's event log

    async def start(self, principal: Principal, start: RunStart, *, on_finish: Sequence[FinishedHook] = ()) -> str:
        """Start the run in the background; returns its id (the run is recorded when this returns)."""
        prepared = await self.prepare(principal, start)
        hooks = list(on_finish)
        if start.kind != "chat":  # run.finished callbacks go to agents' and triggers' subscribers
            hooks += self.callbacks.hooks_for(start.agent_id, start.trigger_id)
        return await self._launch(prepared.request, model=prepared.model, tools=prepared.tools, on_finish=hooks)

    async def prepare(self, principal: Principal, start: RunStart) -> Prepared:
        """What ``start`` runs, not started: a workflow's agent step runs it inside the workflow's own run."""
        environment = await self.environments.resolve(principal.workspace_id, start.environment)
        if start.agent_id is not None:
            plan = await self._agent_run(principal, start, environment.id)
        elif start.model_config_id is not None:
            plan = await self._model_run(principal, start)
        else:
            spec, tools = await self._assistant_plan(principal, start.kb_ids)
            plan = _Plan(spec=spec, tools=tools, history=start.history)
        spec = plan.spec
        names = references(spec.instructions) if plan.resolve_vars else set()
        if names:  # {{vars.NAME}}: resolved here, on the server, from the run's environment
            values = await self.variables.values(principal.workspace_id, environment.id, names)
            spec = msgspec.structs.replace(spec, instructions=substitute(spec.instructions, values))
        model = with_notes(self.models.get_model(spec.model, plan.endpoint), plan.notes)
        request = RunRequest(
            spec=spec, user_input=start.user_input, workspace_id=principal.workspace_id, kind=start.kind,
            history=plan.history, agent_id=start.agent_id, session_id=start.session_id,
            user_message_id=start.user_message_id, trigger_id=start.trigger_id, user_id=principal.user_id,
            environment_id=environment.id, prompt_id=plan.prompt_id, prompt_version=plan.prompt_version,
            event_id=start.event_id, event_depth=start.event_depth,
        )  # fmt: skip
        return Prepared(request=request, model=model, tools=plan.tools)

    async def _agent_run(self, principal: Principal, start: RunStart, environment_id: str) -> _Plan:
        assert start.agent_id is not None
        agent = await self.agents.get(principal, start.agent_id)
        if agent.status != "active":
            raise Conflict(f"agent {agent.name!r} is {agent.status}: activate it to run it")
        spec, tools = self._agent_plan(principal, agent)
        plan = _Plan(spec=spec, tools=tools, history=start.history)
        if agent.model_config_id:  # the configuration's model, endpoint and credentials, never a request's
            plan.endpoint = await self.model_configs.endpoint(principal.workspace_id, agent.model_config_id)
            plan.spec = msgspec.structs.replace(plan.spec, model=plan.endpoint.model)
        if agent.prompt_key:  # the prompt's version for this run, rendered (its vars.NAME included)
            resolved = await self.prompts.runtime.resolve(
                principal.workspace_id, agent.prompt_key, environment_id=environment_id,
                assignment_key=start.session_id or principal.user_id, pinned=agent.prompt_version,
            )  # fmt: skip
            rendered = await self.render_prompt(
                principal.workspace_id, resolved.snapshot, start.variables or {}, environment_id
            )
            plan.spec = msgspec.structs.replace(plan.spec, instructions=_system_text(rendered))
            plan.history = (*_conversation(rendered), *start.history)
            plan.prompt_id, plan.prompt_version, plan.resolve_vars = resolved.prompt_id, resolved.version, False
        if agent.mcp_servers:
            await self._add_mcp_tools(principal, agent, plan)
        return plan

    async def _add_mcp_tools(self, principal: Principal, agent: AgentInfo, plan: _Plan) -> None:
        """The allowed tools of the agent's MCP servers, listed now (side by side, bounded): a server that cannot
        be used adds no tools and a note, said as the run's first ``thinking``; the run starts anyway."""
        if self.mcp_servers is None:
            return
        configs, notes = await self.mcp_servers.for_run(principal.workspace_id, agent.mcp_servers)
        toolset = await load_mcp_tools(configs, allowed=self.mcp_servers.allowed, taken=[t.name for t in plan.tools])
        plan.tools = [*plan.tools, *toolset.tools]
        plan.spec = msgspec.structs.replace(plan.spec, tools=(*plan.spec.tools, *(t.name for t in toolset.tools)))
        plan.notes += [*notes, *toolset.notes]

    async def _model_run(self, principal: Principal, start: RunStart) -> _Plan:
        """A model configuration called directly (the OpenAI-compatible endpoint): the caller's system text,
        never searched for ``{{vars.NAME}}`` (server-side variables are for text the workspace wrote)."""
        assert start.model_config_id is not None
        endpoint = await self.model_configs.endpoint(principal.workspace_id, start.model_config_id)
        spec = AgentSpec(
            name=start.name or endpoint.model, model=endpoint.model, instructions=start.system or "", tools=(),
            temperature=start.temperature,
        )  # fmt: skip
        return _Plan(spec=spec, tools=[], history=start.history, endpoint=endpoint, resolve_vars=False)

    async def _launch(
        self, request: RunRequest, *, model: Any, tools: Sequence[Tool], on_finish: Sequence[FinishedHook] = ()
    ) -> str:
        quiet = audit_scope.set(None)  # a run's writes are its own record, not configuration changes to audit
        try:
            if self.run_events is None:
                return await self.manager.start(request, model=model, tools=tools, on_finish=on_finish)
            hooks = [*on_finish, *self.run_events.hooks(request)]
            run_id = await self.manager.start(request, model=model, tools=tools, on_finish=hooks)
            self.run_events.started(request, run_id)  # queued, not awaited: before the run can finish
            return run_id
        finally:
            audit_scope.reset(quiet)

    # -- prompts ---------------------------------------------------------------------------------------------------

    async def render_prompt(
        self, workspace_id: str, snapshot: PromptSnapshot, values: Mapping[str, Any], environment_id: str, *,
        inline: bool = False,
    ) -> list[PromptMessage]:  # fmt: skip
        """The snapshot's messages rendered with ``values`` (checked against its declared variables) and the
        environment's workspace variables it reads (``vars.NAME``: saved prompts only). Raises ``InvalidInput``."""
        facts = check_messages(snapshot.messages, None if inline else snapshot.variables)
        if inline and facts.workspace_vars:  # text from a request never reads the workspace's variables
            raise InvalidInput("vars.NAME (workspace variables) can be read by saved prompts only, not inline text")
        context = bind_values(None if inline else snapshot.variables, values, facts.names)
        workspace_vars = await self.variables.values(workspace_id, environment_id, set(facts.workspace_vars))
        unset = sorted(facts.workspace_vars - workspace_vars.keys())
        if unset:
            raise InvalidInput(f"workspace variables not set in this environment: {', '.join(unset)}")
        return await anyio.to_thread.run_sync(render, snapshot.messages, context, workspace_vars)

    async def start_prompt(self, principal: Principal, run: PromptRun) -> str:
        """Render and run a prompt once (no tools), recorded as a run of kind ``prompt``; returns its id."""
        prepared = await self.prepare_prompt(principal, run)
        return await self._launch(prepared.request, model=prepared.model, tools=[])

    async def prepare_prompt(self, principal: Principal, run: PromptRun) -> Prepared:
        """What ``start_prompt`` runs, not started (a workflow's prompt step runs it inside its own run)."""
        environment = await self.environments.resolve(principal.workspace_id, run.environment)
        snapshot = run.snapshot
        rendered = await self.render_prompt(principal.workspace_id, snapshot, run.variables, environment.id,
                                            inline=run.inline)  # fmt: skip
        system = _system_text(rendered)
        if snapshot.output_format == "json":
            schema = msgspec.json.encode(snapshot.output_schema).decode() if snapshot.output_schema else ""
            system = "\n\n".join(filter(None, [system, JSON_OUTPUT + (f" It must match this JSON Schema: {schema}"
                                                                         if schema else "")]))  # fmt: skip
        conversation = list(_conversation(rendered))
        if run.user_input:
            conversation.append(Message(role="user", content=run.user_input))
        if not conversation or conversation[-1].role != "user":
            raise InvalidInput("the prompt has no user message to answer: end it with one or send an input")
        params = {**snapshot.params, **(run.params or {})}
        config_id = run.model_config_id or snapshot.model_config_id
        endpoint = await self._prompt_endpoint(principal.workspace_id, config_id, params) if config_id else None
        spec = AgentSpec(
            name=run.name, model=endpoint.model if endpoint else self.default_model, instructions=system, tools=(),
            kb_ids=(), max_steps=1, temperature=params.get("temperature"),
            timeout_s=float(params.get("timeout_s") or 120.0),
        )  # fmt: skip
        request = RunRequest(
            spec=spec, user_input=conversation[-1].content, workspace_id=principal.workspace_id, kind="prompt",
            history=tuple(conversation[:-1]), user_id=principal.user_id, environment_id=environment.id,
            prompt_id=run.prompt_id, prompt_version=run.prompt_version,
        )  # fmt: skip
        return Prepared(request=request, model=self.models.get_model(spec.model, endpoint), tools=[])

    async def _prompt_endpoint(self, workspace_id: str, config_id: str, params: Mapping[str, Any]) -> ModelEndpoint:
        """The configuration's endpoint with the prompt's sampling parameters over its defaults."""
        endpoint = await self.model_configs.endpoint(workspace_id, config_id)
        extra = {k: v for k, v in params.items() if k in ("temperature", "max_tokens", "top_p") and v is not None}
        if not extra:
            return endpoint
        merged = {**endpoint.params, **extra}
        version = f"{endpoint.version}|{msgspec.json.encode(sorted(merged.items())).decode()}"
        return dataclasses.replace(endpoint, params=merged, version=version)

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


def _system_text(messages: Sequence[PromptMessage]) -> str:
    return "\n\n".join(m.content for m in messages if m.role == "system" and m.content.strip())


def _conversation(messages: Sequence[PromptMessage]) -> tuple[Message, ...]:
    return tuple(Message(role=m.role, content=m.content) for m in messages if m.role != "system")  # type: ignore[arg-type]

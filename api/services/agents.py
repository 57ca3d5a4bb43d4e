"""Agents: their definitions in the workspace (runs start in ``api.services.runs``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from api.services.mcp_servers import McpServerService
from api.services.model_configs import ModelConfigService
from api.services.prompts import PromptService
from engine.agent.spec import HTTP_FETCH, KNOWLEDGE_SEARCH
from engine.db.models import Agent, KnowledgeBase, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import InvalidInput
from engine.ids import utc
from engine.net import allowed_networks, resolve_url_async
from engine.settings import Settings
from ingest.views import Page

KNOWN_TOOLS = (KNOWLEDGE_SEARCH, HTTP_FETCH)


class AgentInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    description: str
    type: str
    status: str  # inactive agents keep their definition but start no runs
    model_config_id: str | None  # a model configuration (its model and credentials) instead of a bare model
    model: str
    instructions: str
    tools: list[str]
    kb_ids: list[str]
    max_steps: int
    max_tokens: int | None
    timeout_s: float
    temperature: float | None
    http_fetch_enabled: bool
    callback_url: str | None
    created_at: datetime
    updated_at: datetime
    prompt_key: str | None = None  # instructions from this prompt (its live version per environment) instead
    prompt_version: int | None = None  # pinned: this version, whatever is live
    mcp_servers: list[str] = []  # MCP servers whose allowed tools the agent's runs are offered (see /mcp-servers)

    @classmethod
    def of(cls, row: Agent) -> AgentInfo:
        values = {f: getattr(row, f) for f in cls.__struct_fields__}
        values.update(created_at=utc(row.created_at), updated_at=utc(row.updated_at))
        values["mcp_servers"] = list(row.mcp_servers or [])
        return cls(**values)


class AgentFields(msgspec.Struct, kw_only=True):
    """Editable fields; ``None`` leaves a field unchanged on update."""

    name: str | None = None
    description: str | None = None
    type: str | None = None
    status: str | None = None
    model: str | None = None
    model_config_id: str | None = None
    instructions: str | None = None
    tools: list[str] | None = None
    kb_ids: list[str] | None = None
    max_steps: int | None = None
    max_tokens: int | None = None
    timeout_s: float | None = None
    temperature: float | None = None
    http_fetch_enabled: bool | None = None
    callback_url: str | None = None
    prompt_key: str | None = None  # "": no prompt (the agent's own instructions again)
    prompt_version: int | None = None  # 0: not pinned
    mcp_servers: list[str] | None = None  # ids of the workspace's MCP servers


class AgentService:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], settings: Settings, model_configs: ModelConfigService,
        prompts: PromptService, mcp_servers: McpServerService | None = None,
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.settings = settings
        self.model_configs = model_configs
        self.prompts = prompts
        self.mcp_servers = mcp_servers

    # -- definitions -----------------------------------------------------------------------------

    async def _check_kbs(self, session: AsyncSession, workspace_id: str, kb_ids: Sequence[str]) -> None:
        found = set(
            await session.scalars(
                select(KnowledgeBase.id).where(
                    KnowledgeBase.workspace_id == workspace_id, KnowledgeBase.id.in_(list(kb_ids))
                )
            )
        )
        missing = [kb for kb in kb_ids if kb not in found]
        if missing:
            raise InvalidInput(f"unknown knowledge base: {missing[0]}")

    async def _check_fields(self, principal: Principal, fields: AgentFields) -> None:
        if fields.model_config_id:  # the configuration's model is the agent's model
            fields.model = await self.model_configs.check_usable(principal.workspace_id, fields.model_config_id)
        unknown = [t for t in fields.tools or [] if t not in KNOWN_TOOLS]
        if unknown:
            raise InvalidInput(f"unknown tool {unknown[0]!r}; available: {', '.join(KNOWN_TOOLS)}")
        if fields.callback_url:
            # the same SSRF guard as deliveries (DNS off the event loop; operator allow-list only)
            allowed = allowed_networks(self.settings.callback_allow_networks)
            await resolve_url_async(fields.callback_url, allowed=allowed)
        if fields.mcp_servers:
            fields.mcp_servers = list(dict.fromkeys(fields.mcp_servers))
            if self.mcp_servers is None:
                raise InvalidInput("MCP servers are not available here")
            await self.mcp_servers.check_ids(principal.workspace_id, fields.mcp_servers)

    async def _bind_prompt(self, principal: Principal, row: Agent, fields: AgentFields) -> None:
        """Bind the agent to a prompt (checked: the key exists, a pinned version too), or unbind it."""
        if fields.prompt_key is None and fields.prompt_version is None:
            return
        key = row.prompt_key if fields.prompt_key is None else fields.prompt_key or None
        version = row.prompt_version if fields.prompt_version is None else fields.prompt_version or None
        if fields.prompt_key is not None and fields.prompt_version is None and key != row.prompt_key:
            version = None  # another prompt (or none): the old pin goes
        if key is None and version is not None:
            raise InvalidInput("prompt_version pins a version of the agent's prompt: set prompt_key too")
        if key is not None:
            await self.prompts.check_binding(principal.workspace_id, key, version)
        row.prompt_key, row.prompt_version = key, version

    async def create(self, principal: Principal, fields: AgentFields) -> AgentInfo:
        await self._check_fields(principal, fields)
        binding = AgentFields(prompt_key=fields.prompt_key, prompt_version=fields.prompt_version)
        fields.prompt_key = fields.prompt_version = None
        values = {k: v for k, v in msgspec.structs.asdict(fields).items() if v is not None}
        values.setdefault("model", self.settings.default_model)
        values.setdefault("tools", [KNOWLEDGE_SEARCH])
        values.setdefault("mcp_servers", [])
        row = Agent(id=new_id("agt"), workspace_id=principal.workspace_id, **values)
        await self._bind_prompt(principal, row, binding)
        async with self.sessions() as session:
            await self._check_kbs(session, principal.workspace_id, row.kb_ids or [])
            session.add(row)
            await session.commit()
        return AgentInfo.of(row)

    async def _row(self, session: AsyncSession, workspace_id: str, agent_id: str) -> Agent:
        return await get_in_workspace(session, Agent, agent_id, workspace_id, "agent")

    async def get(self, principal: Principal, agent_id: str) -> AgentInfo:
        async with self.sessions() as session:
            return AgentInfo.of(await self._row(session, principal.workspace_id, agent_id))

    async def list(self, principal: Principal, *, page: int, limit: int) -> Page[AgentInfo]:
        where = Agent.workspace_id == principal.workspace_id
        async with self.sessions() as session:
            order = [Agent.created_at, Agent.id]
            total, rows = await fetch_page(session, Agent, [where], order, page=page, limit=limit)
            return Page(items=[AgentInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def update(self, principal: Principal, agent_id: str, fields: AgentFields) -> AgentInfo:
        await self._check_fields(principal, fields)
        async with self.sessions() as session:
            row = await self._row(session, principal.workspace_id, agent_id)
            if fields.kb_ids is not None:
                await self._check_kbs(session, principal.workspace_id, fields.kb_ids)
            await self._bind_prompt(principal, row, fields)
            for key, value in msgspec.structs.asdict(fields).items():
                if value is not None and key not in ("prompt_key", "prompt_version"):
                    setattr(row, key, value)
            row.updated_at = now()
            await session.commit()
            return AgentInfo.of(row)

    async def delete(self, principal: Principal, agent_id: str) -> None:
        async with self.sessions() as session:
            await session.delete(await self._row(session, principal.workspace_id, agent_id))
            await session.commit()

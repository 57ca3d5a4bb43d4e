"""What a workflow definition may use, read from the workspace: the ``engine.workflows.Catalog`` its checks need.

Only the names a definition mentions are looked up (its reusable steps, prompts and their versions, agents,
knowledge bases); tools are the registered ones a workflow step may call. A prompt's variables are those of the
version a run would use: the pinned one, else the latest published (the draft while nothing is published).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from engine.agent.registry import build_tools
from engine.agent.spec import HTTP_FETCH, KNOWLEDGE_SEARCH, AgentSpec
from engine.db.models import Agent, KnowledgeBase, Prompt, PromptVersion, WorkflowStepDef
from engine.ports import Tool
from engine.retrieval import Retriever
from engine.workflows import Catalog, PromptShape, VarShape, WorkflowSpec, resolve_uses, wanted

WORKFLOW_TOOLS = (KNOWLEDGE_SEARCH, HTTP_FETCH)  # registered tools a tool step may call (engine.agent.registry)


def workflow_tools(retriever: Retriever | None, names: Sequence[str] = WORKFLOW_TOOLS) -> list[Tool]:
    spec = AgentSpec(name="workflow", model="", tools=tuple(names))
    return build_tools(spec, searcher=retriever, http_fetch_enabled=True)


def step_fields(row: WorkflowStepDef) -> dict[str, Any]:
    """A reusable step as the fields a workflow step starts from."""
    return {**(row.config or {}), "kind": row.kind}


def _shape(variables: Iterable[Mapping[str, Any]], output_format: str) -> PromptShape:
    return PromptShape(
        variables={
            str(v["name"]): VarShape(type=str(v.get("type") or "string"),
                                     required=bool(v.get("required", True)) and v.get("default") is None)
            for v in variables if isinstance(v, Mapping) and v.get("name")
        },
        output_format=output_format,
    )  # fmt: skip


class CatalogReader:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], retriever: Retriever | None, *, events: bool
    ) -> None:
        self.sessions = sessions
        self.retriever = retriever
        self.events = events
        self.tools = {tool.name: dict(tool.parameters) for tool in workflow_tools(retriever)}

    async def step_defs(self, workspace_id: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted_ids = sorted(set(ids))
        if not wanted_ids:
            return {}
        async with self.sessions() as session:
            rows = await session.scalars(select(WorkflowStepDef).where(
                WorkflowStepDef.workspace_id == workspace_id, WorkflowStepDef.id.in_(wanted_ids)))  # fmt: skip
            return {row.id: step_fields(row) for row in rows}

    async def catalog(
        self, principal: Principal, spec: WorkflowSpec, *, overrides: Mapping[str, Mapping[str, Any]] | None = None
    ) -> Catalog:
        """Everything ``spec`` names (``overrides``: reusable steps as they are about to be saved)."""
        ids = {s.get("uses") for s in spec.steps if isinstance(s.get("uses"), str)}
        step_defs = await self.step_defs(principal.workspace_id, [i for i in ids if isinstance(i, str)])
        step_defs.update({key: dict(value) for key, value in (overrides or {}).items()})
        merged, _ = resolve_uses(spec.steps, step_defs)
        names = wanted(merged)
        async with self.sessions() as session:
            prompts = await self._prompts(session, principal.workspace_id, names["prompts"])
            agents = set(await session.scalars(select(Agent.id).where(
                Agent.workspace_id == principal.workspace_id, Agent.id.in_(sorted(names["agents"])))))  # fmt: skip
            kbs = set(await session.scalars(select(KnowledgeBase.id).where(
                KnowledgeBase.workspace_id == principal.workspace_id,
                KnowledgeBase.id.in_(sorted(names["kb_ids"])))))  # fmt: skip
        return Catalog(
            prompts=prompts, agents=agents, tools=self.tools, kb_ids={kb for kb in kbs if principal.allows_kb(kb)},
            step_defs=step_defs, events=self.events,
        )  # fmt: skip

    @staticmethod
    async def _prompts(
        session: AsyncSession, workspace_id: str, wanted_prompts: set[tuple[str, int | None]]
    ) -> dict[tuple[str, int | None], PromptShape | str]:
        found: dict[tuple[str, int | None], PromptShape | str] = {}
        for key, version in sorted(wanted_prompts, key=lambda kv: (kv[0], kv[1] or 0)):
            prompt = await session.scalar(select(Prompt).where(Prompt.workspace_id == workspace_id, Prompt.key == key))
            if prompt is None:
                continue  # unknown: the check says so
            number = version
            if number is None:
                number = await session.scalar(
                    select(func.max(PromptVersion.number)).where(PromptVersion.prompt_id == prompt.id))
            row = None if number is None else await session.scalar(select(PromptVersion).where(
                PromptVersion.prompt_id == prompt.id, PromptVersion.number == number))  # fmt: skip
            if version is not None and row is None:
                found[(key, version)] = f"prompt {key!r} has no version {version}"
            elif row is not None:
                found[(key, version)] = _shape(row.variables or [], row.output_format)
            else:
                found[(key, version)] = _shape(prompt.variables or [], prompt.output_format)
        return found

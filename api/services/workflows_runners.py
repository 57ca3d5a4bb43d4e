"""The step runners that reach the workspace (prompt, agent, search, tool) and the durable step-result store.

A prompt step renders the prompt's version and an agent step prepares the agent exactly as their own runs do
(``RunService.prepare_prompt`` / ``RunService.prepare``: same rendering, variables, model configuration, tools),
then runs the agent loop inside the workflow's run: their ``thinking``, ``content``, ``tool_start``/``tool_end``
and ``citation`` events stream between the step's ``step_start`` and ``step_end``; the loop's own ``execution``
and terminal events become the step's outcome. Their token and time budgets are cut to what the workflow has
left. Every runner acts as the principal who started the run (its role and knowledge-base scope).
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from api.services.runs import Prepared, PromptRun, RunService, RunStart
from api.services.workflows_catalog import workflow_tools
from engine.agent.loop import run_agent
from engine.agent.trace import RunTrace
from engine.db.models import WorkflowStepResult
from engine.errors import EngineError
from engine.events import DoneEvent, ErrorEvent, ExecutionEvent, SessionEvent, ToolEndEvent, ToolStartEvent
from engine.metadata import metadata_filter
from engine.ports import ToolContext
from engine.retrieval import SearchRequest
from engine.types import SearchFilters
from engine.workflows import EmitRunner, EventSink, StepCall, StepFailed, StepOutcome, StepRecord, StepRunner
from engine.workflows.definition import AgentStep, PromptStep, SearchStep, ToolStep

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class SqlStepResults:
    """``engine.workflows.StepResultStore`` over the ``workflow_step_results`` table."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def load(self, run_id: str) -> list[StepRecord]:
        async with self.sessions() as session:
            rows = await session.scalars(select(WorkflowStepResult.record).where(WorkflowStepResult.run_id == run_id))
            return [msgspec.convert(record, StepRecord) for record in rows]

    async def save(self, run_id: str, record: StepRecord) -> None:
        async with self.sessions.begin() as session:
            await session.merge(WorkflowStepResult(
                run_id=run_id, step_id=record.step_id, record=msgspec.to_builtins(record), status=record.status,
                finished_at=record.finished_at,
            ))  # fmt: skip


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise StepFailed(f"{what} rendered to null")
    return json.dumps(value, ensure_ascii=False)


class StepRunners:
    """The runners of one run, acting as ``principal`` in ``environment_id``."""

    def __init__(
        self, runs: RunService, principal: Principal, environment_id: str, events: EventSink | None
    ) -> None:
        self.runs, self.principal, self.environment_id, self.events = runs, principal, environment_id, events

    def mapping(self) -> dict[str, StepRunner]:
        runners: dict[str, StepRunner] = {
            "prompt": self.prompt, "agent": self.agent, "search": self.search, "tool": self.tool,
        }  # fmt: skip
        if self.events is not None:
            runners["emit"] = EmitRunner(self.events)
        return runners

    async def prompt(self, call: StepCall) -> StepOutcome:
        step = call.step
        assert isinstance(step, PromptStep)
        try:
            resolved = await self.runs.prompts.runtime.resolve(
                self.principal.workspace_id, step.prompt, environment_id=self.environment_id,
                assignment_key=self.principal.user_id, pinned=step.version,
            )  # fmt: skip
            user_input = call.input.get("input")
            run = PromptRun(
                name=resolved.key, snapshot=resolved.snapshot, variables=call.input.get("variables") or {},
                user_input=None if user_input is None else _text(user_input, "the input"),
                environment=self.environment_id, prompt_id=resolved.prompt_id, prompt_version=resolved.version,
            )  # fmt: skip
            prepared = await self.runs.prepare_prompt(self.principal, run)
        except EngineError as exc:
            raise StepFailed(exc.message) from None
        text, usage = await self._loop(call, prepared)
        data = None
        if resolved.snapshot.output_format == "json":
            data = _json_answer(text, resolved.snapshot.output_schema)
        return StepOutcome(output={"text": text, "data": data}, usage=usage)

    async def agent(self, call: StepCall) -> StepOutcome:
        step = call.step
        assert isinstance(step, AgentStep)
        start = RunStart(
            user_input=_text(call.input.get("input"), "the input"), agent_id=step.agent_id,
            environment=self.environment_id, variables=call.input.get("variables") or None,
            event_id=call.context.event_id, event_depth=call.context.event_depth,
        )  # fmt: skip
        try:
            prepared = await self.runs.prepare(self.principal, start)
        except EngineError as exc:
            raise StepFailed(exc.message) from None
        text, usage = await self._loop(call, prepared)
        return StepOutcome(output={"text": text}, usage=usage)

    async def _loop(self, call: StepCall, prepared: Prepared) -> tuple[str, Any]:
        """Run the agent loop inside the workflow's run; its events stream as the step's own."""
        request = prepared.request
        spec = request.spec
        limit = spec.max_tokens if call.tokens_left is None else min(spec.max_tokens or call.tokens_left,
                                                                     call.tokens_left)  # fmt: skip
        spec = msgspec.structs.replace(spec, max_tokens=limit, timeout_s=max(0.001, min(spec.timeout_s,
                                                                                        call.time_left_s)))
        request = msgspec.structs.replace(request, spec=spec, run_id=call.context.run_id)
        trace = RunTrace()
        ctx = ToolContext(run_id=call.context.run_id, workspace_id=self.principal.workspace_id, kb_ids=spec.kb_ids)
        output: str | None = None
        async for event in run_agent(request, tools=prepared.tools, model=prepared.model, run_id=call.context.run_id,
                                     ctx=ctx, trace=trace):  # fmt: skip
            if isinstance(event, DoneEvent):
                output = event.output
            elif isinstance(event, ErrorEvent):
                raise StepFailed(f"{event.code}: {event.message}")
            elif not isinstance(event, ExecutionEvent | SessionEvent):
                await call.emit(event)
        return output or "", trace.usage

    async def search(self, call: StepCall) -> StepOutcome:
        step = call.step
        assert isinstance(step, SearchStep)
        query = _text(call.input.get("query"), "the query")
        try:
            filters = SearchFilters(
                workspace_id=self.principal.workspace_id, kb_ids=self.principal.narrow_kbs(step.kb_ids),
                tags=tuple(step.tags) if step.tags is not None else None,
                file_types=tuple(t.lower().lstrip(".") for t in step.file_types) if step.file_types else None,
                metadata=metadata_filter(step.metadata),
            )  # fmt: skip
            hits = await self.runs.retriever.retrieve(
                SearchRequest(query=query, filters=filters, top_k=step.top_k, mode=step.mode)
            )
        except EngineError as exc:
            raise StepFailed(exc.message) from None
        found = [{
            "text": h.chunk.text, "score": round(h.score, 6), "chunk_id": h.chunk.id, "file_id": h.chunk.file_id,
            "file_name": h.chunk.file_name, "kb_id": h.chunk.kb_id, "page": h.chunk.page, "tags": list(h.chunk.tags),
        } for h in hits]  # fmt: skip
        return StepOutcome(output={"query": query, "count": len(found), "hits": found})

    async def tool(self, call: StepCall) -> StepOutcome:
        step = call.step
        assert isinstance(step, ToolStep)
        tools = workflow_tools(self.runs.retriever, (step.tool,))
        if not tools:
            raise StepFailed(f"no tool {step.tool!r} on this server")
        arguments = dict(call.input.get("arguments") or {})
        kb_ids = await self.runs.readable_kbs(self.principal)
        ctx = ToolContext(run_id=call.context.run_id, workspace_id=self.principal.workspace_id, kb_ids=kb_ids)
        await call.emit(ToolStartEvent(run_id="", seq=0, ts=0, id=step.id, name=step.tool, arguments=arguments))
        result = await tools[0](arguments, ctx)
        await call.emit(ToolEndEvent(run_id="", seq=0, ts=0, id=step.id, name=step.tool, summary=result.summary,
                                     is_error=result.is_error))  # fmt: skip
        output = {"content": result.content, "summary": result.summary, "is_error": result.is_error}
        return StepOutcome(output=output, summary=result.summary)


def _json_answer(text: str, schema: dict[str, Any] | None) -> Any:
    """A prompt's JSON answer (a code fence around it is tolerated), checked against its output schema."""
    fenced = _FENCE.match(text)
    try:
        data = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        raise StepFailed("the prompt's output format is json, but the answer is not JSON") from None
    if schema is not None:
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)][:5]
        if errors:
            raise StepFailed("the answer does not match the prompt's output schema: " + "; ".join(errors))
    return data

"""Workflow runs: started through the one run manager (kind ``workflow``), resumed after a restart.

A run stores, next to its ``runs`` row, what it needs to go on without the request that started it
(``workflow_runs``: its steps as they run, with reusable steps merged, and the principal: user, role,
knowledge-base scope). Each finished step lands in ``workflow_step_results`` before its ``step_end`` is
published. At start-up ``resume_unfinished`` finds workflow runs still ``running`` (the process died, or was
shut down while they ran) and continues each one: the stored events replay first, finished steps are not run
again, the step that was running when the server stopped runs again from its start.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import jsonschema
import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from api.services.runs import RunService
from api.services.workflows_runners import SqlStepResults, StepRunners
from engine.agent.spec import AgentSpec
from engine.db.audit import audit_scope
from engine.db.models import Run, WorkflowRun, new_id
from engine.db.run_store import INTERRUPTED, SqlRunStore
from engine.errors import InvalidInput
from engine.events import DoneEvent, ErrorEvent, RunEvent
from engine.runs import FinishedHook, RunBody, RunManager, RunRecord, RunRequest
from engine.workflows import EventSink, Plan, RunContext, WorkflowExecutor, WorkflowSpec, compile_workflow

log = logging.getLogger("ragline.workflows")


def check_input(spec: WorkflowSpec, data: Mapping[str, Any]) -> None:
    """Raise ``InvalidInput`` listing every way ``data`` breaks the workflow's ``input_schema``."""
    if spec.input_schema is None:
        return
    errors = sorted(jsonschema.Draft202012Validator(spec.input_schema).iter_errors(dict(data)),
                    key=lambda e: [str(p) for p in e.absolute_path])  # fmt: skip
    if errors:
        listed = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(input)'}: {e.message}" for e in errors[:20])
        raise InvalidInput(f"the input does not match the workflow's input_schema: {listed}"[:4000])


class WorkflowRuns:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], runs: RunService, run_store: SqlRunStore,
        events: EventSink | None,
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.runs = runs
        self.manager: RunManager = runs.manager
        self.run_store = run_store
        self.events = events
        self.results = SqlStepResults(sessions)

    async def start(
        self, principal: Principal, plan: Plan, *, workflow_id: str, version: int, name: str, data: Mapping[str, Any],
        environment: str | None = None, event_id: str | None = None, event_depth: int = 0,
    ) -> str:  # fmt: skip
        """Start a checked plan in the background; returns the run id (the run is stored when this returns)."""
        check_input(plan.spec, data)
        env = await self.runs.environments.resolve(principal.workspace_id, environment)
        record = RunRecord(
            id=new_id("run"), workspace_id=principal.workspace_id, kind="workflow", status="running", model="workflow",
            input=json.dumps(data, ensure_ascii=False), user_id=principal.user_id, environment_id=env.id,
            started_at=time.time(), event_id=event_id, event_depth=event_depth, workflow_id=workflow_id,
            workflow_version=version,
        )  # fmt: skip
        request = RunRequest(
            spec=AgentSpec(name=name, model="workflow", tools=()), user_input=record.input,
            workspace_id=record.workspace_id, kind="workflow", user_id=record.user_id, environment_id=env.id,
            event_id=event_id, event_depth=event_depth,
        )  # fmt: skip
        run_events = self.runs.run_events
        hooks: list[FinishedHook] = run_events.hooks(request) if run_events is not None else []
        body = self._body(plan, record, principal, name, dict(data), start_seq=0)
        quiet = audit_scope.set(None)  # a run's writes are its own record, not configuration changes to audit
        try:
            run_id = await self.manager.start_body(record, body, timeout_s=plan.spec.budgets.timeout_s,
                                                   on_finish=hooks)  # fmt: skip
            definition = {**msgspec.to_builtins(plan.spec), "steps": list(plan.resolved)}
            async with self.sessions.begin() as session:
                session.add(WorkflowRun(
                    run_id=run_id, workspace_id=principal.workspace_id, workflow_id=workflow_id, version=version,
                    name=name, definition=definition, principal=msgspec.to_builtins(principal), created_at=time.time(),
                ))  # fmt: skip
        finally:
            audit_scope.reset(quiet)
        if run_events is not None:
            run_events.started(request, run_id)
        return run_id

    def _body(
        self, plan: Plan, record: RunRecord, principal: Principal, name: str, data: dict[str, Any], *, start_seq: int
    ) -> RunBody:
        context = RunContext(
            run_id=record.id, workspace_id=record.workspace_id, workflow_id=record.workflow_id,
            event_id=record.event_id, event_depth=record.event_depth,
        )  # fmt: skip
        runners = StepRunners(self.runs, principal, record.environment_id or "", self.events).mapping()
        executor = WorkflowExecutor(plan, name=name, input=data, context=context, runners=runners, store=self.results)

        async def body(publish: Any, trace: Any) -> RunEvent:
            return await executor.run(publish, trace, start_seq=start_seq)

        return body

    # -- after a restart -----------------------------------------------------------------------------------------------

    async def resume_unfinished(self) -> int:
        """Continue every workflow run left ``running``; returns how many go on. Call once at start-up, after
        the run manager started (one process owns the runs)."""
        async with self.sessions() as session:
            ids = list(await session.scalars(select(Run.id).where(Run.kind == "workflow", Run.status == "running")))
        resumed = 0
        for run_id in ids:
            try:
                resumed += await self._resume(run_id)
            except Exception:
                log.exception("could not resume workflow run %s", run_id)
                await self._close(run_id, f"{INTERRUPTED}; it could not be resumed")
        if ids:
            log.info("resumed %d of %d unfinished workflow runs", resumed, len(ids))
        return resumed

    async def _resume(self, run_id: str) -> int:
        record = await self.run_store.get_run(run_id)
        events = await self.run_store.list_events(run_id)
        async with self.sessions() as session:
            saved = await session.get(WorkflowRun, run_id)
        if record is None or saved is None:
            await self._close(run_id, INTERRUPTED)
            return 0
        if events and isinstance(events[-1], DoneEvent | ErrorEvent):  # it ended, but its record was not updated
            await self._close(run_id, None, terminal=events[-1])
            return 0
        if [e.seq for e in events] != list(range(1, len(events) + 1)):
            events = events[: next(i for i, e in enumerate(events) if e.seq != i + 1)]  # keep the gapless start
        principal = msgspec.convert(saved.principal, Principal)
        plan = compile_workflow(msgspec.convert(saved.definition, WorkflowSpec), None)
        record.status = "running"
        body = self._body(plan, record, principal, saved.name, json.loads(record.input),
                          start_seq=len(events))  # fmt: skip
        run_events = self.runs.run_events
        hooks: list[FinishedHook] = [run_events.finished] if run_events is not None else []
        await self.manager.start_body(record, body, timeout_s=plan.spec.budgets.timeout_s, on_finish=hooks,
                                      resumed=events)  # fmt: skip
        return 1

    async def _close(self, run_id: str, message: str | None, *, terminal: RunEvent | None = None) -> None:
        """End a run that cannot go on: failed with ``message`` (an error event appended), or as ``terminal`` says."""
        record = await self.run_store.get_run(run_id)
        if record is None:
            return
        if terminal is None:
            events = await self.run_store.list_events(run_id)
            seq = max((e.seq for e in events), default=0) + 1
            terminal = ErrorEvent(run_id=run_id, seq=seq, ts=time.time(), code="internal", message=message or "")
            await self.run_store.append_events(run_id, [terminal])
        record.finished_at = time.time()
        if isinstance(terminal, DoneEvent):
            record.status, record.output = "succeeded", terminal.output
        elif isinstance(terminal, ErrorEvent):
            record.status = "cancelled" if terminal.code == "cancelled" else "failed"
            record.error, record.error_code = terminal.message, terminal.code
        record.steps = [msgspec.to_builtins(r) for r in sorted(await self.results.load(run_id),
                                                               key=lambda r: r.finished_at)]  # fmt: skip
        await self.run_store.finish_run(record)

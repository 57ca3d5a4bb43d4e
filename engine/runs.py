"""``RunManager``: agent runs live on the server, not in the request that started them.

A run is a background task in the manager's task group. Its events are kept in memory (and
persisted through a ``RunStore``) so any number of subscribers can replay what they missed and
then follow live events, e.g. an SSE client resuming with ``Last-Event-ID``. Use it as
``async with RunManager(store) as runs:``; leaving the block cancels whatever is still running.

The terminal event (``done`` or ``error``) is the last word: it is published only after everything the
run writes is committed (its events, its final record, and what its finished hooks store, such as a chat
answer), on every path: success, model error, timeout, cancel and crash.

What a run is stored as (``RunRecord``, ``RunStore``, ``FinishedHook``) is in ``engine.run_records``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from engine.agent.loop import run_agent
from engine.agent.spec import AgentSpec, RunKind, RunRequest
from engine.agent.trace import RunTrace
from engine.errors import NotFound, RateLimited
from engine.events import DoneEvent, ErrorEvent, RunEvent, StepEndEvent
from engine.ids import new_id
from engine.ports import ModelClient, Tool, ToolContext
from engine.run_records import FinishedHook, RunRecord, RunStore, finish_record

log = logging.getLogger(__name__)

HOOK_TIMEOUT_S = 30.0
TIMEOUT_GRACE_S = 5.0  # the loop enforces timeout_s itself; this backstop only catches a stuck tool

RunBody = Callable[[Callable[[RunEvent], Awaitable[None]], RunTrace], Awaitable[RunEvent]]
"""A run's work other than the agent loop (a workflow): it publishes its events (``seq`` going on from the events
it was started with), fills the trace (steps, usage, output) and returns its terminal event, unpublished."""


@dataclass(eq=False)
class _LiveRun:
    record: RunRecord
    spec: AgentSpec
    trace: RunTrace
    scope: anyio.CancelScope
    hooks: list[FinishedHook]
    events: list[RunEvent] = field(default_factory=list)
    unsaved: list[RunEvent] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)
    finished: anyio.Event = field(default_factory=anyio.Event)
    cancel_requested: bool = False
    last_flush: float = field(default_factory=time.monotonic)
    resumable: bool = False  # a server shutdown leaves it running in the store, for the next start to resume


class RunManager:
    """Starts, streams, cancels and records agent runs.

    Args:
        store: Persistence (``None``: memory only, for tools and tests).
        hooks: Finished hooks of every run (``FinishedHook``); ``start`` adds per-run ones.
        keep_finished: Finished runs kept in memory for fast replay; older ones are read from the store.
        max_running_per_workspace: Concurrent runs per workspace (``None``: unlimited).
        flush_interval_s: Events are written in batches at most this far apart (and at the end).
    """

    def __init__(
        self,
        store: RunStore | None = None,
        *,
        hooks: Sequence[FinishedHook] = (),
        keep_finished: int = 256,
        max_running_per_workspace: int | None = None,
        flush_interval_s: float = 0.2,
    ) -> None:
        self._store = store
        self._hooks = list(hooks)
        self._keep_finished = keep_finished
        self._max_running = max_running_per_workspace
        self._flush_interval_s = flush_interval_s
        self._runs: dict[str, _LiveRun] = {}
        self._finished_order: deque[str] = deque()
        self._tg: TaskGroup | None = None
        self._closing = False

    async def __aenter__(self) -> RunManager:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        await self.shutdown()
        assert self._tg is not None
        return await self._tg.__aexit__(exc_type, exc, tb)

    # -- public API ---------------------------------------------------------------------------
    async def start(
        self,
        request: RunRequest,
        *,
        model: ModelClient,
        tools: Sequence[Tool] = (),
        on_finish: Sequence[FinishedHook] = (),
    ) -> str:
        """Start a run in the background and return its id (the run row exists when this returns)."""
        if self._tg is None or self._closing:
            raise RuntimeError("RunManager is not running (use 'async with RunManager(...)')")
        self._check_capacity(request.workspace_id)
        spec = request.spec
        run_id = request.run_id or new_id("run")
        record = RunRecord(
            id=run_id, workspace_id=request.workspace_id, kind=request.kind, status="running", model=spec.model,
            input=request.user_input, agent_id=request.agent_id, session_id=request.session_id,
            trigger_id=request.trigger_id, user_id=request.user_id, environment_id=request.environment_id,
            started_at=time.time(), prompt_id=request.prompt_id, prompt_version=request.prompt_version,
            event_id=request.event_id, event_depth=request.event_depth,
        )  # fmt: skip
        live = _LiveRun(
            record=record, spec=spec, trace=RunTrace(), hooks=[*self._hooks, *on_finish],
            scope=anyio.CancelScope(deadline=anyio.current_time() + spec.timeout_s + TIMEOUT_GRACE_S),
        )  # fmt: skip
        if self._store is not None:
            await self._store.create_run(record)
        self._runs[run_id] = live
        ctx = ToolContext(run_id=run_id, workspace_id=request.workspace_id, kb_ids=spec.kb_ids)
        events = run_agent(request, tools=tools, model=model, run_id=run_id, ctx=ctx, trace=live.trace)
        self._tg.start_soon(self._execute, live, events, name=f"run {run_id}")
        return run_id

    async def start_body(
        self, record: RunRecord, body: RunBody, *, timeout_s: float, on_finish: Sequence[FinishedHook] = (),
        resumed: Sequence[RunEvent] | None = None,
    ) -> str:  # fmt: skip
        """Start a run whose work is ``body`` (a workflow) and return its id; ``record`` is stored first.

        ``resumed``: the stored events of a run a restart interrupted; ``record`` is then already stored and the run
        goes on from there (its subscribers replay those events first). Such runs are *resumable*: a shutdown stops
        them without a terminal event, leaving them ``running`` in the store for the next start.
        """
        if self._tg is None or self._closing:
            raise RuntimeError("RunManager is not running (use 'async with RunManager(...)')")
        if resumed is None:
            self._check_capacity(record.workspace_id)
        spec = AgentSpec(name=record.kind, model=record.model, tools=(), timeout_s=timeout_s)
        live = _LiveRun(
            record=record, spec=spec, trace=RunTrace(), hooks=[*self._hooks, *on_finish], resumable=True,
            scope=anyio.CancelScope(deadline=anyio.current_time() + timeout_s + TIMEOUT_GRACE_S),
        )  # fmt: skip
        record.steps = live.trace.steps  # the same list: a running run shows the steps done so far
        if resumed is None:
            if self._store is not None:
                await self._store.create_run(record)
        else:
            live.events = list(resumed)
        self._runs[record.id] = live
        self._tg.start_soon(self._execute_body, live, body, name=f"run {record.id}")
        return record.id

    async def get(self, run_id: str, *, workspace_id: str | None = None) -> RunRecord:
        """The run's record (live or stored). Raises ``NotFound`` (also for another workspace's run)."""
        live = self._runs.get(run_id)
        record = live.record if live is not None else await self._stored(run_id)
        if record is None or (workspace_id is not None and record.workspace_id != workspace_id):
            raise NotFound("run", run_id)
        return record

    async def subscribe(
        self, run_id: str, after_seq: int = 0, *, workspace_id: str | None = None
    ) -> AsyncIterator[RunEvent]:
        """Events with ``seq > after_seq``: the missed ones first, then live ones until the terminal event."""
        await self.get(run_id, workspace_id=workspace_id)
        live = self._runs.get(run_id)
        if live is None:
            for event in await self._stored_events(run_id, after_seq):
                yield event
            return
        next_seq = after_seq + 1
        while True:
            changed = live.changed
            while next_seq <= len(live.events):
                event = live.events[next_seq - 1]
                next_seq += 1
                yield event
                if isinstance(event, DoneEvent | ErrorEvent):
                    return
            if live.finished.is_set():
                return
            await changed.wait()

    async def cancel(self, run_id: str, *, workspace_id: str | None = None) -> bool:
        """Ask a run to stop; ``False`` if it had already finished. Raises ``NotFound``."""
        await self.get(run_id, workspace_id=workspace_id)
        live = self._runs.get(run_id)
        if live is None or live.finished.is_set():
            return False
        live.cancel_requested = True
        live.scope.cancel()
        return True

    async def wait(self, run_id: str, *, workspace_id: str | None = None) -> RunRecord:
        """Wait for the run to end and return its final record."""
        await self.get(run_id, workspace_id=workspace_id)
        live = self._runs.get(run_id)
        if live is not None:
            await live.finished.wait()
            return live.record
        return await self.get(run_id, workspace_id=workspace_id)

    def running(self) -> list[str]:
        """Ids of the runs still in progress."""
        return [run_id for run_id, live in self._runs.items() if not live.finished.is_set()]

    async def shutdown(self) -> None:
        """Cancel every running run and wait until each has stored its terminal state."""
        self._closing = True
        live_runs = [live for live in self._runs.values() if not live.finished.is_set()]
        for live in live_runs:
            live.cancel_requested = True
            live.scope.cancel()
        for live in live_runs:
            await live.finished.wait()

    # -- internals ----------------------------------------------------------------------------
    def _check_capacity(self, workspace_id: str) -> None:
        if self._max_running is None:
            return
        running = sum(
            1 for r in self._runs.values() if r.record.workspace_id == workspace_id and not r.finished.is_set()
        )
        if running >= self._max_running:
            raise RateLimited(f"at most {self._max_running} concurrent runs per workspace", retry_after=1.0)

    async def _stored(self, run_id: str) -> RunRecord | None:
        return await self._store.get_run(run_id) if self._store is not None else None

    async def _stored_events(self, run_id: str, after_seq: int) -> list[RunEvent]:
        return await self._store.list_events(run_id, after_seq) if self._store is not None else []

    async def _execute(self, live: _LiveRun, events: AsyncIterator[RunEvent]) -> None:
        terminal: RunEvent | None = None
        try:
            with live.scope:
                async for event in events:
                    if isinstance(event, DoneEvent | ErrorEvent):
                        terminal = event  # published by _finalize, after the run is stored
                    elif terminal is None:
                        await self._publish(live, event)
        except Exception:
            log.exception("run %s crashed outside the loop", live.record.id)
        finally:
            with anyio.CancelScope(shield=True):
                await self._finalize(live, terminal)

    async def _execute_body(self, live: _LiveRun, body: RunBody) -> None:
        terminal: RunEvent | None = None

        async def publish(event: RunEvent) -> None:
            await self._publish(live, event)

        try:
            with live.scope:
                terminal = await body(publish, live.trace)
        except Exception:
            log.exception("run %s crashed", live.record.id)
        finally:
            with anyio.CancelScope(shield=True):
                if terminal is None and live.resumable and self._closing:
                    await self._suspend(live)
                else:
                    await self._finalize(live, terminal)

    async def _suspend(self, live: _LiveRun) -> None:
        """Shutdown: keep what the run published and leave it ``running`` in the store (no terminal event)."""
        await self._flush(live)
        live.finished.set()
        changed, live.changed = live.changed, anyio.Event()
        changed.set()

    async def _publish(self, live: _LiveRun, event: RunEvent) -> None:
        live.events.append(event)
        live.unsaved.append(event)
        changed, live.changed = live.changed, anyio.Event()
        changed.set()
        # a workflow step's end is a checkpoint: its events are stored with it (a resumed run replays them)
        if time.monotonic() - live.last_flush >= self._flush_interval_s or isinstance(event, StepEndEvent):
            with anyio.CancelScope(shield=True):  # a cancel must not tear a half-written batch
                await self._flush(live)

    async def _flush(self, live: _LiveRun) -> None:
        live.last_flush = time.monotonic()
        if self._store is None or not live.unsaved:
            live.unsaved.clear()
            return
        batch = list(live.unsaved)
        try:
            await self._store.append_events(live.record.id, batch)
            del live.unsaved[: len(batch)]
        except Exception:
            log.exception("could not store events of run %s", live.record.id)

    def _missing_terminal(self, live: _LiveRun) -> ErrorEvent:
        if live.cancel_requested:
            code, message = "cancelled", "run cancelled"
        elif live.scope.cancelled_caught:
            code, message = "timeout", f"run exceeded its {live.spec.timeout_s:g} s time limit"
        else:
            code, message = "internal", "internal error"
        live.trace.last_seq = len(live.events) + 1
        return ErrorEvent(run_id=live.record.id, seq=live.trace.last_seq, ts=time.time(), code=code, message=message)

    async def _finalize(self, live: _LiveRun, terminal: RunEvent | None) -> None:
        # The terminal event becomes visible only once the run is stored as finished and its hooks
        # have stored what they write, so a client that saw ``done`` reads the final state.
        if terminal is None:
            terminal = self._missing_terminal(live)
        live.unsaved.append(terminal)
        await self._flush(live)
        finish_record(live.record, live.trace, terminal)
        if self._store is not None:
            try:
                await self._store.finish_run(live.record)
            except Exception:
                log.exception("could not store the end of run %s", live.record.id)
        events = (*live.events, terminal)
        for hook in live.hooks:
            try:
                with anyio.move_on_after(HOOK_TIMEOUT_S):  # a stuck hook must not block the run's end
                    await hook(live.record, events)
            except Exception:
                log.exception("finished hook failed for run %s", live.record.id)
        live.events.append(terminal)
        live.finished.set()
        changed, live.changed = live.changed, anyio.Event()
        changed.set()
        self._remember_finished(live.record.id)

    def _remember_finished(self, run_id: str) -> None:
        self._finished_order.append(run_id)
        while len(self._finished_order) > self._keep_finished:
            self._runs.pop(self._finished_order.popleft(), None)


__all__ = ["FinishedHook", "RunBody", "RunKind", "RunManager", "RunRecord", "RunRequest", "RunStore"]

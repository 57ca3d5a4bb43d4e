"""What a run is stored as: ``RunRecord``, the ``RunStore`` it is persisted through, and its finished hooks."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import msgspec

from engine.agent.spec import RunKind
from engine.agent.trace import RunTrace
from engine.events import DoneEvent, ErrorEvent, RunEvent


class RunRecord(msgspec.Struct, kw_only=True):
    """One run as stored (mirrors the ``runs`` table)."""

    id: str
    workspace_id: str
    kind: RunKind
    status: str  # running | succeeded | failed | cancelled
    model: str
    input: str
    agent_id: str | None = None
    session_id: str | None = None
    trigger_id: str | None = None
    user_id: str | None = None  # who started it (a trigger's runs: "trigger:<id>")
    environment_id: str | None = None
    output: str | None = None
    error: str | None = None
    error_code: str | None = None
    steps: list[Any] = msgspec.field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    started_at: float = 0.0
    finished_at: float | None = None
    latency_ms: float | None = None
    prompt_id: str | None = None  # the prompt (and version) its messages came from
    prompt_version: int | None = None
    event_id: str | None = None  # the workspace event that started it (an automation's run)
    event_depth: int = 0  # how many automation hops led here (loops stop at a limit)
    workflow_id: str | None = None  # a workflow run's workflow and version
    workflow_version: int | None = None


class RunStore(Protocol):
    """Where runs and their events are persisted (``engine.db.run_store.SqlRunStore``)."""

    async def create_run(self, record: RunRecord) -> None: ...

    async def append_events(self, run_id: str, events: Sequence[RunEvent]) -> None: ...

    async def finish_run(self, record: RunRecord) -> None: ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_events(self, run_id: str, after_seq: int = 0) -> list[RunEvent]: ...


FinishedHook = Callable[[RunRecord, Sequence[RunEvent]], Awaitable[None]]
"""Called with the final record and every event (the terminal one last) before the terminal event is
published: what it stores is visible to any client that has seen ``done``. Keep it short (a database
write); slow work such as an HTTP callback goes through a durable queue."""


def finish_record(record: RunRecord, trace: RunTrace, terminal: RunEvent) -> None:
    """Fill in the end of a run: its status, time, steps, token usage, and output or error."""
    usage = trace.usage
    record.status = _status(terminal)
    record.finished_at = time.time()
    record.latency_ms = round((record.finished_at - record.started_at) * 1000, 3)
    record.steps = trace.steps
    record.prompt_tokens, record.completion_tokens, record.total_tokens = (
        usage.prompt,
        usage.completion,
        usage.total,
    )
    if isinstance(terminal, DoneEvent):
        record.output = terminal.output
    elif isinstance(terminal, ErrorEvent):
        record.output = trace.output or None
        record.error, record.error_code = terminal.message, terminal.code


def _status(event: RunEvent) -> str:
    if isinstance(event, DoneEvent):
        return "succeeded"
    return "cancelled" if isinstance(event, ErrorEvent) and event.code == "cancelled" else "failed"

"""Test doubles for the engine's ports (used by this project's tests and by embedders' tests)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import msgspec

from engine.errors import ModelError
from engine.events import ErrorEvent, RunEvent, decode_event, encode_event
from engine.llm import ModelEndpoint, ModelEvent, ModelRequest
from engine.ports import ModelClient
from engine.run_records import RunRecord

INTERRUPTED = "interrupted by a server restart"  # as SqlRunStore.fail_unfinished writes it
_FIXED_AT_CREATION = ("id", "workspace_id", "kind", "input", "started_at")  # finish_run never changes these


class ScriptedModelClient:
    """A ``ModelClient`` that streams scripted ``ModelEvent``s, one script entry per call.

    An entry is a sequence of events, or a ``ModelError`` to raise instead. ``delay_s`` sleeps
    before each event (for cancellation and timeout tests). Every request is kept in ``calls``.
    """

    __test__ = False  # not a pytest test class despite the module name

    def __init__(self, steps: Sequence[Sequence[ModelEvent] | ModelError], *, delay_s: float = 0.0) -> None:
        self._steps = list(steps)
        self._delay_s = delay_s
        self.calls: list[ModelRequest] = []

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        self.calls.append(request)
        index = len(self.calls) - 1
        if index >= len(self._steps):
            raise AssertionError(f"ScriptedModelClient got call {index + 1} but has {len(self._steps)} scripted")
        step = self._steps[index]
        if isinstance(step, ModelError):
            raise step
        for event in step:
            if self._delay_s:
                await anyio.sleep(self._delay_s)
            yield event

    def assert_complete(self) -> None:
        """Fail unless every scripted step was requested."""
        assert len(self.calls) == len(self._steps), f"{len(self.calls)} of {len(self._steps)} scripted calls made"


class StaticModelProvider:
    """A ``ModelProvider`` that answers every model name with one client (e.g. a ``ScriptedModelClient``)."""

    __test__ = False

    def __init__(self, client: ModelClient) -> None:
        self.client = client
        self.names: list[str] = []  # every name asked for, in order

    def get_model(self, name: str, endpoint: ModelEndpoint | None = None) -> ModelClient:
        self.names.append(name)
        return self.client

    def warm_up(self) -> None:
        return None


class InMemoryRunStore:
    """A ``RunStore`` in memory with ``SqlRunStore``'s semantics (tests/conformance/test_run_stores.py holds both).

    Records and events are kept encoded, as the database keeps them, so no caller shares mutable state with the
    store. Like the database it rejects a second run with the same id, events of an unknown run and a batch
    reusing a stored ``seq`` (``ValueError``; a rejected batch stores nothing).
    """

    __test__ = False

    def __init__(self) -> None:
        self._runs: dict[str, bytes] = {}
        self._events: dict[str, dict[int, bytes]] = {}

    async def create_run(self, record: RunRecord) -> None:
        if record.id in self._runs:
            raise ValueError(f"run {record.id} already exists")
        self._runs[record.id] = msgspec.json.encode(record)
        self._events[record.id] = {}

    async def append_events(self, run_id: str, events: Sequence[RunEvent]) -> None:
        stored = self._events.get(run_id)
        if stored is None:
            raise ValueError(f"unknown run {run_id}")
        seqs = [event.seq for event in events]
        if len(set(seqs)) < len(seqs) or not stored.keys().isdisjoint(seqs):
            raise ValueError(f"run {run_id} already has an event with one of the seqs {seqs}")
        stored.update((event.seq, encode_event(event)) for event in events)

    async def finish_run(self, record: RunRecord) -> None:
        current = self._record(record.id)
        if current is not None:  # like an UPDATE matching no row: nothing happens
            kept = {name: getattr(current, name) for name in _FIXED_AT_CREATION}
            self._runs[record.id] = msgspec.json.encode(msgspec.structs.replace(record, **kept))

    async def get_run(self, run_id: str) -> RunRecord | None:
        return self._record(run_id)

    async def list_events(self, run_id: str, after_seq: int = 0) -> list[RunEvent]:
        stored = self._events.get(run_id, {})
        return [decode_event(stored[seq]) for seq in sorted(stored) if seq > after_seq]

    async def list_runs(
        self, workspace_id: str, *, agent_id: str | None = None, limit: int = 50, before: float | None = None
    ) -> list[RunRecord]:
        """A workspace's runs, newest first (``before``: ``started_at`` cursor for paging)."""
        runs = [
            run
            for run in map(self._decode, self._runs.values())
            if run.workspace_id == workspace_id
            and (agent_id is None or run.agent_id == agent_id)
            and (before is None or run.started_at < before)
        ]
        return sorted(runs, key=lambda run: run.started_at, reverse=True)[:limit]

    async def fail_unfinished(self, *, keep_kinds: Sequence[str] = ()) -> int:
        """Close runs left ``running`` (but those of ``keep_kinds``): status failed plus a terminal error event."""
        now = time.time()
        runs = map(self._decode, self._runs.values())
        running = [run for run in runs if run.status == "running" and run.kind not in keep_kinds]
        for run in running:
            events = self._events[run.id]
            seq = max(events, default=0) + 1
            error = ErrorEvent(run_id=run.id, seq=seq, ts=now, code="internal", message=INTERRUPTED)
            events[seq] = encode_event(error)
            run.status, run.error, run.error_code, run.finished_at = "failed", INTERRUPTED, "internal", now
            self._runs[run.id] = msgspec.json.encode(run)
        return len(running)

    def _record(self, run_id: str) -> RunRecord | None:
        data = self._runs.get(run_id)
        return None if data is None else self._decode(data)

    @staticmethod
    def _decode(data: bytes) -> RunRecord:
        return msgspec.json.decode(data, type=RunRecord)


class MemoryEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    workspace_id: str
    type: str
    payload: dict[str, Any]
    source: str
    depth: int = 0
    run_id: str | None = None


class InMemoryEventSink:
    """An ``engine.workflows.EventSink`` that keeps what workflows emit (``events``), in order."""

    __test__ = False

    def __init__(self) -> None:
        self.events: list[MemoryEvent] = []

    async def emit(
        self, workspace_id: str, type: str, payload: dict[str, Any], *, source: str, depth: int = 0,
        run_id: str | None = None,
    ) -> MemoryEvent:  # fmt: skip
        event = MemoryEvent(id=f"evt_{len(self.events) + 1}", workspace_id=workspace_id, type=type, payload=payload,
                            source=source, depth=depth, run_id=run_id)  # fmt: skip
        self.events.append(event)
        return event

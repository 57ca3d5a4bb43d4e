"""What the executor needs from outside, as Protocols: step runners, a durable step-result store, an event sink.

The executor itself knows no SQL, HTTP or model: ``api.services.workflows`` hands it runners for the steps that
reach the workspace (prompt, agent, search, tool) and a store over the ``workflow_step_results`` table. ``emit``
is run here over an ``EventSink`` (the workspace event log's ``emit``); ``condition`` and ``transform`` are pure
and run inside the executor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from engine.events import RunEvent
from engine.types import TokenUsage
from engine.workflows.definition import EmitStep, Step, StepRecord

Publish = Callable[[RunEvent], Awaitable[None]]


class StepFailed(Exception):
    """A step could not do its work: the run fails (or goes on, with ``on_error: continue``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class RunContext:
    run_id: str
    workspace_id: str
    workflow_id: str | None = None
    event_id: str | None = None  # the workspace event that started the run
    event_depth: int = 0  # automation hops that led here: the events the run emits carry it (as run.finished does)


@dataclass(frozen=True)
class StepCall:
    """One step to run: its definition, its input (templates rendered), the run, and what is left of its budgets.

    ``emit`` streams the step's own events (an agent's content and tool calls) inside its ``step_start`` and
    ``step_end``: make them with any ``run_id``/``seq``/``ts``, the executor stamps the run's.
    """

    step: Step
    input: Mapping[str, Any]
    context: RunContext
    tokens_left: int | None
    time_left_s: float
    emit: Publish


@dataclass(frozen=True)
class StepOutcome:
    output: Any
    usage: TokenUsage = field(default_factory=TokenUsage)
    summary: str | None = None  # default: made from the output


class StepRunner(Protocol):
    async def __call__(self, call: StepCall) -> StepOutcome: ...


class StepResultStore(Protocol):
    """Where finished steps are kept durably, so a run that resumes after a restart does not run them again."""

    async def load(self, run_id: str) -> list[StepRecord]: ...

    async def save(self, run_id: str, record: StepRecord) -> None: ...


class EmittedEvent(Protocol):
    @property
    def id(self) -> str: ...


class EventSink(Protocol):
    """The workspace event log (``api.services.events.EventService`` implements it)."""

    async def emit(
        self, workspace_id: str, type: str, payload: dict[str, Any], *, source: str, depth: int = 0,
        run_id: str | None = None,
    ) -> EmittedEvent: ...  # fmt: skip


class EmitRunner:
    """Runs ``emit`` steps: the event goes to the sink one automation hop deeper than the run's own event."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink

    async def __call__(self, call: StepCall) -> StepOutcome:
        assert isinstance(call.step, EmitStep)
        payload = call.input.get("payload")
        if not isinstance(payload, dict):
            raise StepFailed(f"the payload must be an object, it rendered to {type(payload).__name__}")
        source = f"workflow:{call.context.workflow_id}" if call.context.workflow_id else "workflow"
        event = await self.sink.emit(
            call.context.workspace_id, call.step.event, payload, source=source, depth=call.context.event_depth,
            run_id=call.context.run_id,
        )  # fmt: skip
        return StepOutcome(output={"event_id": event.id, "event": call.step.event})


class MemoryStepResults:
    """A ``StepResultStore`` in memory (tests, benchmarks): records are kept encoded, as a database keeps them."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[str, bytes]] = {}

    async def load(self, run_id: str) -> list[StepRecord]:
        return [msgspec.json.decode(data, type=StepRecord) for data in self._runs.get(run_id, {}).values()]

    async def save(self, run_id: str, record: StepRecord) -> None:
        self._runs.setdefault(run_id, {})[record.step_id] = msgspec.json.encode(record)

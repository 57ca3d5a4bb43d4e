"""The workflow executor: concurrent branches, skips, budgets, failures, cancel, resume and shutdown (no SQL, no HTTP).

Runners here are small coroutines; the run manager is the real one over the in-memory run store.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import anyio
import msgspec
import pytest

from engine.agent.trace import RunTrace
from engine.events import ContentEvent, DoneEvent, ErrorEvent, RunEvent, StepEndEvent, StepStartEvent, event_type
from engine.runs import RunManager, RunRecord
from engine.testing import InMemoryEventSink, InMemoryRunStore
from engine.types import TokenUsage
from engine.workflows import (
    EmitRunner,
    MemoryStepResults,
    RunContext,
    StepCall,
    StepFailed,
    StepOutcome,
    StepRecord,
    WorkflowExecutor,
    WorkflowSpec,
    compile_workflow,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def plan_of(steps: list[dict[str, Any]], **extra: Any) -> Any:
    return compile_workflow(msgspec.convert({"steps": steps, **extra}, WorkflowSpec), None)


async def run(
    plan: Any, runners: Mapping[str, Any], *, data: dict[str, Any] | None = None,
    store: MemoryStepResults | None = None, run_id: str = "run_1", start_seq: int = 0,
) -> tuple[list[RunEvent], RunEvent, RunTrace]:  # fmt: skip
    events: list[RunEvent] = []

    async def publish(event: RunEvent) -> None:
        events.append(event)

    trace = RunTrace()
    executor = WorkflowExecutor(plan, name="wf", input=data or {}, context=RunContext(run_id=run_id, workspace_id="ws"),
                                runners=runners, store=store or MemoryStepResults())  # fmt: skip
    terminal = await executor.run(publish, trace, start_seq=start_seq)
    return events, terminal, trace


class Echo:
    """A ``transform``-like runner for a made-up kind: returns its input, optionally slowly, and counts calls."""

    def __init__(self, delay_s: float = 0.0, usage: int = 0) -> None:
        self.calls: list[str] = []
        self.called = anyio.Event()
        self.delay_s = delay_s
        self.usage = usage

    async def __call__(self, call: StepCall) -> StepOutcome:
        self.calls.append(call.step.id)
        self.called.set()
        await call.emit(ContentEvent(run_id="", seq=0, ts=0, content=f"working on {call.step.id}"))
        await anyio.sleep(self.delay_s)
        output = {"query": str(call.input.get("query", call.step.id)), "count": 0, "hits": []}
        return StepOutcome(output=output, usage=TokenUsage(prompt=self.usage, total=self.usage))


def search(step_id: str, query: str = "q", **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "kind": "search", "query": query, **extra}


async def test_parallel_branches_really_run_at_the_same_time() -> None:
    inside = 0
    most = 0
    both_in = anyio.Event()

    async def meet(call: StepCall) -> StepOutcome:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        if inside == 2:
            both_in.set()
        with anyio.fail_after(10):  # one at a time would wait here forever
            await both_in.wait()
        inside -= 1
        return StepOutcome(output={"query": call.input["query"], "count": 0, "hits": []})

    join = {"id": "join", "kind": "transform", "template": ["{{ steps.a.output.query }}", "{{ steps.b.output.query }}"]}
    plan = plan_of([search("a"), search("b"), join])
    events, terminal, trace = await run(plan, {"search": meet})
    assert most == 2
    assert isinstance(terminal, DoneEvent) and terminal.output == '["q","q"]'
    starts = [e.step_id for e in events if isinstance(e, StepStartEvent)]
    assert set(starts[:2]) == {"a", "b"} and starts[2] == "join"
    assert [e.seq for e in [*events, terminal]] == list(range(1, len(events) + 2))
    assert [s["step_id"] for s in trace.steps][-1] == "join"


async def test_step_events_wrap_the_steps_own_events_and_a_branch_not_taken_is_skipped() -> None:
    plan = plan_of([
        search("find", "{{ input.q }}"),
        {"id": "check", "kind": "condition", "expression": "input.n > 2", "then": ["big"], "else": ["small"]},
        search("big", "big {{ input.q }}"), search("small", "small {{ input.q }}"),
        {"id": "after_small", "kind": "transform", "template": "{{ steps.small.output }}"},
        {"id": "out", "kind": "transform", "after": ["big", "small"],
         "template": {"found": "{{ coalesce(steps.big.output, steps.small.output) }}"}},
    ], output="{{ steps.out.output.found.query }}")  # fmt: skip
    echo = Echo()
    events, terminal, trace = await run(plan, {"search": echo}, data={"q": "llamas", "n": 5})
    assert isinstance(terminal, DoneEvent) and terminal.output == "big llamas"
    assert sorted(echo.calls) == ["big", "find"]
    ends = {e.step_id: e for e in events if isinstance(e, StepEndEvent)}
    assert ends["small"].status == "skipped" and "condition 'check' was true" in ends["small"].summary
    assert ends["after_small"].status == "skipped"  # every step it depends on was skipped
    assert ends["out"].status == "succeeded"
    around = [event_type(e) for e in events if getattr(e, "step_id", None) == "big"
              or getattr(e, "content", None) == "working on big"]  # fmt: skip
    assert around == ["step_start", "content", "step_end"]
    start = next(e for e in events if isinstance(e, StepStartEvent) and e.step_id == "big")
    assert start.input["query"] == "big llamas"
    assert {s["step_id"]: s["status"] for s in trace.steps} == {
        "find": "succeeded", "check": "succeeded", "big": "succeeded", "small": "skipped", "after_small": "skipped",
        "out": "succeeded",
    }  # fmt: skip


async def test_a_failed_step_fails_the_run_and_stops_its_siblings() -> None:
    slow = Echo(delay_s=30)

    async def broken(call: StepCall) -> StepOutcome:
        await anyio.sleep(0.05)
        raise StepFailed("the index is on fire")

    plan = plan_of([search("slow"), {"id": "bad", "kind": "tool", "tool": "x"}, search("never", after=["bad"])])
    started = time.monotonic()
    _, terminal, _ = await run(plan, {"search": slow, "tool": broken})
    assert time.monotonic() - started < 10
    assert isinstance(terminal, ErrorEvent) and terminal.code == "step_failed"
    assert "'bad'" in terminal.message and "the index is on fire" in terminal.message
    assert "never" not in slow.calls


async def test_on_error_continue_leaves_null_and_goes_on() -> None:
    async def broken(call: StepCall) -> StepOutcome:
        raise RuntimeError("boom")

    plan = plan_of([{"id": "bad", "kind": "tool", "tool": "x", "on_error": "continue"},
                    {"id": "next", "kind": "transform", "template": {"status": "{{ steps.bad.status }}",
                                                                      "output": "{{ steps.bad.output }}"}}])
    _, terminal, trace = await run(plan, {"tool": broken})
    assert isinstance(terminal, DoneEvent)
    assert msgspec.json.decode(terminal.output) == {"status": "failed", "output": None}
    assert trace.steps[0]["error"] == "RuntimeError: boom"


@pytest.mark.parametrize(
    ("budgets", "code"),
    [({"max_steps": 2}, "max_steps"), ({"max_tokens": 100}, "max_tokens"), ({"timeout_s": 0.3}, "timeout")],
)
async def test_budgets(budgets: dict[str, Any], code: str) -> None:
    echo = Echo(delay_s=30 if code == "timeout" else 0, usage=60)
    plan = plan_of([search("a"), search("b", after=["a"]), search("c", after=["b"])], budgets=budgets)
    started = time.monotonic()
    _, terminal, _ = await run(plan, {"search": echo})
    assert isinstance(terminal, ErrorEvent) and terminal.code == code, terminal
    assert time.monotonic() - started < 10
    assert echo.calls == {"max_steps": ["a", "b"], "max_tokens": ["a", "b"], "timeout": ["a"]}[code]


async def test_a_resumed_run_does_not_run_finished_steps_again() -> None:
    store = MemoryStepResults()
    done = StepRecord(step_id="a", kind="search", status="succeeded", output={"query": "from before"},
                      finished_at=time.time(), duration_ms=5.0)  # fmt: skip
    await store.save("run_1", done)
    echo = Echo()
    plan = plan_of([search("a"), search("b", "{{ steps.a.output.query }}")])
    events, terminal, trace = await run(plan, {"search": echo}, store=store, start_seq=7)
    assert echo.calls == ["b"]
    assert events[0].seq == 8 and event_type(events[0]) == "thinking" and "a" in events[0].content  # type: ignore[attr-defined]
    assert isinstance(terminal, DoneEvent) and msgspec.json.decode(terminal.output)["query"] == "from before"
    assert [s["step_id"] for s in trace.steps] == ["a", "b"]
    assert {r.step_id for r in await store.load("run_1")} == {"a", "b"}


async def test_emit_goes_one_hop_deeper_with_the_run() -> None:
    sink = InMemoryEventSink()
    plan = plan_of([{"id": "say", "kind": "emit", "event": "report.ready", "payload": {"n": "{{ input.n }}"}}])
    events: list[RunEvent] = []

    async def publish(event: RunEvent) -> None:
        events.append(event)

    context = RunContext(run_id="run_9", workspace_id="ws", workflow_id="wf_1", event_id="evt_0", event_depth=2)
    executor = WorkflowExecutor(plan, name="wf", input={"n": 3}, context=context, runners={"emit": EmitRunner(sink)},
                                store=MemoryStepResults())  # fmt: skip
    terminal = await executor.run(publish, RunTrace())
    assert isinstance(terminal, DoneEvent)
    [event] = sink.events
    assert (event.type, event.payload, event.depth, event.run_id, event.source) == (
        "report.ready", {"n": 3}, 2, "run_9", "workflow:wf_1")


def record(run_id: str) -> RunRecord:
    return RunRecord(id=run_id, workspace_id="ws", kind="workflow", status="running", model="workflow", input="{}",
                     started_at=time.time())  # fmt: skip


def body_of(plan: Any, runners: Mapping[str, Any], run_id: str) -> Any:
    executor = WorkflowExecutor(plan, name="wf", input={}, context=RunContext(run_id=run_id, workspace_id="ws"),
                                runners=runners, store=MemoryStepResults())  # fmt: skip
    return lambda publish, trace: executor.run(publish, trace)


async def test_cancel_through_the_run_manager() -> None:
    store = InMemoryRunStore()
    echo = Echo(delay_s=30)
    async with RunManager(store) as manager:
        run_id = await manager.start_body(record("run_c"), body_of(plan_of([search("a")]), {"search": echo}, "run_c"),
                                          timeout_s=60)  # fmt: skip
        with anyio.fail_after(10):
            await echo.called.wait()
        assert await manager.cancel(run_id) is True
        final = await manager.wait(run_id)
    assert final.status == "cancelled" and final.error_code == "cancelled"
    events = await store.list_events(run_id)
    assert [event_type(e) for e in events] == ["execution", "step_start", "content", "error"]


async def test_a_shutdown_leaves_a_workflow_run_running_for_the_next_start() -> None:
    store = InMemoryRunStore()
    echo = Echo(delay_s=30)
    async with RunManager(store) as manager:
        await manager.start_body(record("run_s"), body_of(plan_of([search("a")]), {"search": echo}, "run_s"),
                                 timeout_s=60)  # fmt: skip
        with anyio.fail_after(10):
            await echo.called.wait()
    stored = await store.get_run("run_s")
    assert stored is not None and stored.status == "running"
    assert [event_type(e) for e in await store.list_events("run_s")] == ["execution", "step_start", "content"]
    assert await store.fail_unfinished(keep_kinds=("workflow",)) == 0

"""RunManager: replay-then-tail with after_seq, store fallback, hooks, scoping, crash recovery."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from engine.agent.spec import AgentSpec
from engine.agent.tools import function_tool
from engine.db.run_store import SqlRunStore
from engine.errors import ModelError, NotFound, RateLimited
from engine.events import ContentEvent, DoneEvent, ErrorEvent, RunEvent
from engine.llm import Finish, TextDelta, ToolCall, ToolCallReady, UsageReport
from engine.runs import RunManager, RunRecord
from engine.testing import ScriptedModelClient
from tests.agent.helpers import ask, assert_seq, collect, compact, kinds

pytestmark = pytest.mark.anyio
SPEC = AgentSpec(name="scripted", model="scripted/model", tools=())


def words(n: int) -> list[TextDelta | UsageReport | Finish]:
    return [*(TextDelta(f"w{i} ") for i in range(n)), UsageReport(7, n), Finish("stop")]


async def test_replay_then_tail_with_after_seq(manager: RunManager, store: SqlRunStore) -> None:
    model = ScriptedModelClient([words(20)], delay_s=0.02)
    run_id = await manager.start(ask(SPEC, "hi", "ws_a"), model=model, tools=[])
    first: list[object] = []
    async for event in manager.subscribe(run_id):
        first.append(event)
        if len(first) == 5:
            break  # the client disconnects; the run goes on
    await anyio.sleep(0.1)  # some events happen while nobody listens
    resumed = await collect(manager, run_id, after_seq=5)  # Last-Event-ID: 5
    events = first + resumed
    assert_seq(events, run_id)  # type: ignore[arg-type]
    assert compact(events) == ["execution", "content*", "done"]  # type: ignore[arg-type]
    assert len(events) == 22 and resumed[0].seq == 6
    assert "".join(e.content for e in events if isinstance(e, ContentEvent)) == "".join(f"w{i} " for i in range(20))
    late = await collect(manager, run_id, after_seq=20)
    assert [e.seq for e in late] == [21, 22] and isinstance(late[-1], DoneEvent)
    assert await collect(manager, run_id, after_seq=22) == []
    model.assert_complete()


async def test_concurrent_subscribers_see_the_same_events(manager: RunManager) -> None:
    model = ScriptedModelClient([words(10)], delay_s=0.01)
    run_id = await manager.start(ask(SPEC, "hi", "ws_a"), model=model, tools=[])
    results: list[list[object]] = [[], [], []]

    async def listen(i: int) -> None:
        results[i] = await collect(manager, run_id)  # type: ignore[assignment]

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(listen, i)
    assert results[0] == results[1] == results[2] and len(results[0]) == 12


async def test_finished_runs_are_read_back_from_the_store(store: SqlRunStore) -> None:
    finished: list[RunRecord] = []

    async def hook(record: RunRecord, events: Sequence[RunEvent]) -> None:
        assert isinstance(events[-1], DoneEvent) and events[-1].seq == len(events)  # handed every event
        finished.append(record)

    async with RunManager(store, keep_finished=1, hooks=[hook]) as runs:
        first = await runs.start(ask(SPEC, "a", "w"), model=ScriptedModelClient([words(3)]), tools=[])
        await runs.wait(first)
        second = await runs.start(ask(SPEC, "b", "w"), model=ScriptedModelClient([words(2)]), tools=[])
        live_events = await collect(runs, second)
        await runs.wait(second)
        # the first run is no longer in memory: replay comes from SQLite, same events
        replay = await collect(runs, first, after_seq=2)
        assert [e.seq for e in replay] == [3, 4, 5] and isinstance(replay[-1], DoneEvent)
        assert (await runs.get(first)).status == "succeeded"
        assert kinds(live_events) == ["execution", "content", "content", "done"]
        with pytest.raises(NotFound):
            await runs.get(first, workspace_id="someone_else")
        with pytest.raises(NotFound):
            await collect(runs, "run_missing")
        assert await runs.cancel(first) is False
    assert [r.id for r in finished] == [first, second] and all(r.status == "succeeded" for r in finished)


async def test_model_error_and_tool_crash(manager: RunManager, store: SqlRunStore) -> None:
    @function_tool
    def explode() -> str:
        """Always fails."""
        raise RuntimeError("boom with secret internals")

    call = ToolCall(id="t1", name="explode", arguments="{}")
    model = ScriptedModelClient(
        [[ToolCallReady(call), Finish("tool_calls")], ModelError("provider down")],
    )
    run_id = await manager.start(ask(SPEC, "go", "w"), model=model, tools=[explode])
    events = await collect(manager, run_id)
    assert kinds(events) == ["execution", "thinking", "tool_start", "tool_end", "error"]
    assert isinstance(events[-1], ErrorEvent) and (events[-1].code, events[-1].message) == (
        "model_error",
        "provider down",
    )
    second_prompt = model.calls[1].messages[-1]
    assert second_prompt.role == "tool" and second_prompt.content == "Tool failed: RuntimeError"
    record = await store.get_run(run_id)
    assert record is not None and record.status == "failed" and record.steps[1]["is_error"] is True
    # no provider usage: budgets still count tokens, estimated with tiktoken
    assert record.total_tokens > 0 and record.steps[0]["usage"]["completion"] > 0
    model.assert_complete()


async def test_concurrency_cap_per_workspace(store: SqlRunStore) -> None:
    async with RunManager(store, max_running_per_workspace=1) as runs:
        slow = ScriptedModelClient([words(30)], delay_s=0.05)
        run_id = await runs.start(ask(SPEC, "a", "w"), model=slow, tools=[])
        with pytest.raises(RateLimited):
            await runs.start(ask(SPEC, "b", "w"), model=ScriptedModelClient([words(1)]), tools=[])
        other = await runs.start(ask(SPEC, "c", "v"), model=ScriptedModelClient([words(1)]), tools=[])
        await runs.wait(other)
        await runs.cancel(run_id)
        assert (await runs.wait(run_id)).status == "cancelled"


async def test_fail_unfinished_closes_runs_of_a_crashed_process(store: SqlRunStore) -> None:
    record = RunRecord(id="run_crashed", workspace_id="w", kind="chat", status="running", model="m", input="x")
    await store.create_run(record)
    await store.append_events("run_crashed", [ContentEvent(run_id="run_crashed", seq=1, ts=1.0, content="par")])
    assert await store.fail_unfinished() == 1
    stored = await store.get_run("run_crashed")
    assert stored is not None and (stored.status, stored.error_code) == ("failed", "internal")
    events = await store.list_events("run_crashed")
    assert kinds(events) == ["content", "error"] and events[-1].seq == 2
    assert [r.id for r in await store.list_runs("w")] == ["run_crashed"]
    async with RunManager(store) as runs:
        assert kinds(await collect(runs, "run_crashed", after_seq=1)) == ["error"]


@pytest.mark.parametrize("ending", ["done", "model_error", "timeout", "cancelled"])
async def test_terminal_event_comes_after_every_write(store: SqlRunStore, ending: str) -> None:
    """On every path, a subscriber that sees the terminal event finds the final record and the hooks' writes."""
    written: list[str] = []

    async def hook(record: RunRecord, events: Sequence[RunEvent]) -> None:
        await anyio.sleep(0.05)  # a slow write: the terminal event must still wait for it
        written.append(record.status)

    script = {
        "done": [words(3)],
        "model_error": [ModelError("provider down")],
        "timeout": [words(50)],
        "cancelled": [words(50)],
    }[ending]
    spec = AgentSpec(name="s", model="m", tools=(), timeout_s=0.3 if ending == "timeout" else 30)
    async with RunManager(store, hooks=[hook]) as runs:
        run_id = await runs.start(ask(spec, "go"), model=ScriptedModelClient(script, delay_s=0.02), tools=[])
        if ending == "cancelled":
            await anyio.sleep(0.1)
            await runs.cancel(run_id)
        async for event in runs.subscribe(run_id):
            if isinstance(event, DoneEvent | ErrorEvent):
                stored = await store.get_run(run_id)
                assert stored is not None and stored.finished_at is not None
                assert written == [stored.status] and stored.status != "running"
                assert (event.code if isinstance(event, ErrorEvent) else "done") == ending


async def test_invented_tool_calls_without_tools_on_offer_leave_the_streamed_answer(manager: RunManager) -> None:
    """A model that calls a tool nobody offered, after writing text: that text was the answer."""
    call = ToolCall(id="t1", name="lookup", arguments="{}")
    model = ScriptedModelClient([[TextDelta("Paris is sunny."), ToolCallReady(call), Finish("tool_calls")]])
    run_id = await manager.start(ask(SPEC, "weather?", "w"), model=model, tools=[])
    events = await collect(manager, run_id)
    assert compact(events) == ["execution", "content*", "done"]
    assert events[-1].output == "".join(e.content for e in events if isinstance(e, ContentEvent)) == "Paris is sunny."

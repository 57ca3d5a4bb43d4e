"""One behavioural contract for every ``RunStore``: the in-memory fake, ``SqlRunStore`` on SQLite, and
``SqlRunStore`` on PostgreSQL when ``RAGLINE_TEST_DATABASE_URL`` names a server (skipped otherwise).

Each test runs once per store through the parametrised ``run_store`` fixture, a fresh empty store per test.
``list_runs`` and ``fail_unfinished`` are not in the ``RunStore`` Protocol (the API and start-up call them on
``SqlRunStore``), but the fake offers them too, so they are part of the contract here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy.exc import IntegrityError

from engine.agent.spec import AgentSpec
from engine.agent.tools import function_tool
from engine.db.run_store import INTERRUPTED, SqlRunStore
from engine.db.session import create_engine, migrate, session_factory
from engine.errors import ModelError
from engine.events import (
    AnswerEvent,
    AnswerMetadata,
    AnswerSource,
    CitationEvent,
    ContentEvent,
    DoneEvent,
    ErrorEvent,
    ExecutionEvent,
    RunEvent,
    SessionEvent,
    ThinkingEvent,
    ToolEndEvent,
    ToolStartEvent,
    event_type,
)
from engine.ids import new_id
from engine.llm import Finish, TextDelta, ToolCall, ToolCallReady, UsageReport
from engine.runs import RunManager, RunRecord, RunRequest
from engine.testing import InMemoryRunStore, ScriptedModelClient
from engine.types import TokenUsage
from tests.helpers import postgres

pytestmark = pytest.mark.anyio

# what each store raises for a write the schema forbids (a taken id or seq, events of an unknown run)
REJECTED = (ValueError, IntegrityError)
T0 = 1_700_000_000.125  # a started_at with a fractional part: floats must round-trip exactly


class ContractStore(Protocol):
    """``RunStore`` plus what ``SqlRunStore`` offers beyond it (and the fake copies)."""

    async def create_run(self, record: RunRecord) -> None: ...
    async def append_events(self, run_id: str, events: list[RunEvent]) -> None: ...
    async def finish_run(self, record: RunRecord) -> None: ...
    async def get_run(self, run_id: str) -> RunRecord | None: ...
    async def list_events(self, run_id: str, after_seq: int = 0) -> list[RunEvent]: ...
    async def list_runs(
        self, workspace_id: str, *, agent_id: str | None = None, limit: int = 50, before: float | None = None
    ) -> list[RunRecord]: ...
    async def fail_unfinished(self) -> int: ...


STORE_KINDS = [
    "memory",
    "sqlite",
    pytest.param(
        "postgres", marks=pytest.mark.skipif(not postgres.SERVER_URL, reason="RAGLINE_TEST_DATABASE_URL is not set")
    ),
]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=STORE_KINDS)
async def run_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ContractStore]:
    if request.param == "memory":
        yield InMemoryRunStore()
        return
    url = f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}" if request.param == "sqlite" else postgres.fresh_database()
    db = create_engine(url)
    await migrate(db)
    yield SqlRunStore(session_factory(db))
    await db.dispose()


def make_record(**overrides: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "id": new_id("run"), "workspace_id": "ws_a", "kind": "agent", "status": "running",
        "model": "openai/gpt-4o-mini", "input": "Quelle est la politique de remboursement ? 🧾", "agent_id": "agent_1",
        "session_id": "sess_1", "trigger_id": None, "started_at": T0,
    }  # fmt: skip
    return RunRecord(**{**fields, **overrides})


def every_event_type(run_id: str) -> list[RunEvent]:
    """One event of each ``RunEvent`` type, seq 1..10, with nested, unicode and null fields."""
    base: dict[str, Any] = {"run_id": run_id}
    return [
        ExecutionEvent(
            **base, seq=1, ts=T0 + 0.001, execution_id=run_id, agent="tester", model="openai/scripted",
            session_id="sess_1", user_message_id="17",
        ),
        ThinkingEvent(**base, seq=2, ts=T0 + 0.002, content="The user asks about refunds…"),
        ToolStartEvent(
            **base,
            seq=3,
            ts=T0 + 0.003,
            id="call_1",
            name="knowledge_search",
            arguments={"query": "Rückerstattung", "top_k": 3, "filters": {"tags": ["policy"], "page": None}},
        ),
        ToolEndEvent(
            **base, seq=4, ts=T0 + 0.004, id="call_1", name="knowledge_search", summary="1 passage", is_error=True
        ),
        ContentEvent(**base, seq=5, ts=T0 + 0.005, content="Refunds within 30 days [1] ✅"),
        CitationEvent(
            **base,
            seq=6,
            ts=T0 + 0.006,
            index=1,
            chunk_id="chunk_1",
            file_id="file_1",
            file_name="policy.md",
            page=None,
            quote="Refunds are accepted within 30 days.",
        ),
        DoneEvent(
            **base,
            seq=7,
            ts=T0 + 0.007,
            output="Refunds within 30 days [1] ✅",
            token_usage=TokenUsage(prompt=40, completion=9, total=49),
            time=0.007,
        ),
        ErrorEvent(**base, seq=8, ts=T0 + 0.008, message="run cancelled", code="cancelled"),
        SessionEvent(**base, seq=9, ts=T0 + 0.009, session_id="sess_1"),
        AnswerEvent(
            **base, seq=10, ts=T0 + 0.010, content="Refunds within 30 days [1] ✅",
            sources=(AnswerSource(index=1, chunk_id="c", file_id="f", file_name="p.md", page=3, quote="Refunds"),),
            metadata=AnswerMetadata(
                execution_id=run_id, session_id=None, model="m", token_usage=TokenUsage(prompt=1, completion=2, total=3)
            ),
        ),
    ]


# ---- records ------------------------------------------------------------------------------------------------------


async def test_create_then_get_returns_the_same_record(run_store: ContractStore) -> None:
    record = make_record(steps=[{"kind": "model", "usage": {"prompt": 3}, "tools": ["a", "b"]}], trigger_id="trg_1")
    await run_store.create_run(record)
    stored = await run_store.get_run(record.id)
    assert stored == record
    record.status = "succeeded"
    record.steps.append({"kind": "tool"})
    assert await run_store.get_run(record.id) == stored  # the store keeps its own copy


async def test_unknown_run_has_no_record_and_no_events(run_store: ContractStore) -> None:
    await run_store.create_run(make_record(id="run_known"))
    assert await run_store.get_run("run_missing") is None
    assert await run_store.list_events("run_missing") == []
    assert await run_store.list_events("run_known") == []


async def test_a_second_run_with_the_same_id_is_rejected(run_store: ContractStore) -> None:
    first = make_record()
    await run_store.create_run(first)
    with pytest.raises(REJECTED):
        await run_store.create_run(make_record(id=first.id, input="another input"))
    assert await run_store.get_run(first.id) == first


async def test_finish_run_stores_the_outcome_but_never_the_identity(run_store: ContractStore) -> None:
    created = make_record()
    await run_store.create_run(created)
    finished = make_record(
        id=created.id, workspace_id="ws_other", kind="chat", input="rewritten input", started_at=T0 + 99,
        status="failed", model="openai/other", output="partial answer", error="model call failed",
        error_code="model_error",
        steps=[{"kind": "model", "ms": 12.5}, {"kind": "tool", "name": "knowledge_search"}],
        prompt_tokens=40, completion_tokens=9, total_tokens=49, finished_at=T0 + 1.5, latency_ms=1500.25,
        agent_id="agent_2", session_id=None,
    )  # fmt: skip
    await run_store.finish_run(finished)
    stored = await run_store.get_run(created.id)
    assert stored is not None
    assert (stored.id, stored.workspace_id, stored.kind, stored.input, stored.started_at) == (
        created.id, "ws_a", "agent", created.input, T0,
    )  # fmt: skip
    assert (stored.status, stored.output, stored.error, stored.error_code, stored.model) == (
        "failed", "partial answer", "model call failed", "model_error", "openai/other",
    )  # fmt: skip
    assert (stored.prompt_tokens, stored.completion_tokens, stored.total_tokens) == (40, 9, 49)
    assert (stored.finished_at, stored.latency_ms, stored.steps) == (T0 + 1.5, 1500.25, finished.steps)
    assert (stored.agent_id, stored.session_id) == ("agent_2", None)


async def test_finishing_an_unknown_run_stores_nothing(run_store: ContractStore) -> None:
    await run_store.finish_run(make_record(id="run_never_created", status="succeeded"))
    assert await run_store.get_run("run_never_created") is None
    assert await run_store.list_runs("ws_a") == []


# ---- events -------------------------------------------------------------------------------------------------------


async def test_every_event_type_round_trips_in_seq_order(run_store: ContractStore) -> None:
    record = make_record()
    await run_store.create_run(record)
    events = every_event_type(record.id)
    for batch in ([events[2], events[0]], [events[1]], events[:2:-1]):  # batches out of order: seq decides
        await run_store.append_events(record.id, batch)
    stored = await run_store.list_events(record.id)
    assert stored == events
    assert [event_type(e) for e in stored] == [
        "execution", "thinking", "tool_start", "tool_end", "content", "citation", "done", "error", "session",
        "ai_response",
    ]  # fmt: skip


async def test_after_seq_returns_only_later_events(run_store: ContractStore) -> None:
    record = make_record()
    await run_store.create_run(record)
    events = every_event_type(record.id)
    await run_store.append_events(record.id, events)
    for after in range(len(events) + 2):
        assert await run_store.list_events(record.id, after_seq=after) == events[after:], after


async def test_events_of_two_runs_do_not_mix(run_store: ContractStore) -> None:
    first, second = make_record(), make_record(workspace_id="ws_b")
    for record in (first, second):
        await run_store.create_run(record)
    first_events, second_events = every_event_type(first.id)[:5], every_event_type(second.id)[:3]
    await run_store.append_events(first.id, first_events[:2])
    await run_store.append_events(second.id, second_events)  # same seqs as the first run's: no clash
    await run_store.append_events(first.id, first_events[2:])
    assert await run_store.list_events(first.id) == first_events
    assert await run_store.list_events(second.id) == second_events
    assert await run_store.list_events(second.id, after_seq=1) == second_events[1:]


async def test_a_batch_reusing_a_stored_seq_is_rejected_whole(run_store: ContractStore) -> None:
    record = make_record()
    await run_store.create_run(record)
    events = every_event_type(record.id)
    await run_store.append_events(record.id, events[:2])
    with pytest.raises(REJECTED):
        duplicate = ContentEvent(run_id=record.id, seq=2, ts=T0, content="dup")
        await run_store.append_events(record.id, [events[2], duplicate])
    assert await run_store.list_events(record.id) == events[:2]  # nothing of the failed batch, events[2] included


async def test_events_of_an_unknown_run_are_rejected(run_store: ContractStore) -> None:
    with pytest.raises(REJECTED):
        await run_store.append_events("run_missing", every_event_type("run_missing")[:1])
    assert await run_store.list_events("run_missing") == []


# ---- listing and crash recovery -----------------------------------------------------------------------------------


async def test_list_runs_is_newest_first_per_workspace_filtered_and_paged(run_store: ContractStore) -> None:
    runs = [
        make_record(id="run_old", started_at=T0, agent_id="agent_1"),
        make_record(id="run_mid", started_at=T0 + 10, agent_id="agent_2"),
        make_record(id="run_new", started_at=T0 + 20, agent_id="agent_1"),
        make_record(id="run_other_ws", workspace_id="ws_b", started_at=T0 + 30),
    ]
    for record in runs:
        await run_store.create_run(record)

    async def ids(**kw: Any) -> list[str]:
        return [r.id for r in await run_store.list_runs("ws_a", **kw)]

    assert await ids() == ["run_new", "run_mid", "run_old"]
    assert (await run_store.list_runs("ws_a"))[0] == runs[2]
    assert await ids(agent_id="agent_1") == ["run_new", "run_old"]
    assert await ids(limit=2) == ["run_new", "run_mid"]
    assert await ids(before=T0 + 10) == ["run_old"]  # the cursor is exclusive
    assert [r.id for r in await run_store.list_runs("ws_b")] == ["run_other_ws"]
    assert await run_store.list_runs("ws_none") == []


async def test_fail_unfinished_closes_running_runs_with_an_error_event_of_the_next_seq(
    run_store: ContractStore,
) -> None:
    with_events, without_events = make_record(), make_record(workspace_id="ws_b")
    done = make_record()
    for record in (with_events, without_events, done):
        await run_store.create_run(record)
    await run_store.append_events(with_events.id, every_event_type(with_events.id)[:3])
    done_events = every_event_type(done.id)[:1]
    await run_store.append_events(done.id, done_events)
    done.status, done.output, done.finished_at = "succeeded", "fine", T0 + 1
    await run_store.finish_run(done)
    before = time.time()

    assert await run_store.fail_unfinished() == 2

    for record, expected_seq in ((with_events, 4), (without_events, 1)):
        stored = await run_store.get_run(record.id)
        assert stored is not None
        assert (stored.status, stored.error, stored.error_code) == ("failed", INTERRUPTED, "internal")
        assert stored.finished_at is not None and stored.finished_at >= before - 1
        assert (stored.input, stored.started_at) == (record.input, record.started_at)
        events = await run_store.list_events(record.id)
        assert [e.seq for e in events] == list(range(1, expected_seq + 1))
        last = events[-1]
        assert isinstance(last, ErrorEvent)
        assert (last.run_id, last.code, last.message) == (record.id, "internal", INTERRUPTED)
    assert await run_store.get_run(done.id) == done  # finished runs are left alone
    assert await run_store.list_events(done.id) == done_events
    assert await run_store.fail_unfinished() == 0


# ---- the run runtime on every store -------------------------------------------------------------------------------


@function_tool
def weather(city: str) -> str:
    """Look up the weather of a city.

    Args:
        city: City name.
    """
    return f"Sunny in {city}"


SPEC = AgentSpec(name="tester", model="scripted/model", tools=("weather",))
WEATHER_CALL = ToolCall(id="call_w", name="weather", arguments='{"city": "Oslo"}')


async def run_on(
    run_store: ContractStore, model: ScriptedModelClient, run_id: str
) -> tuple[list[RunEvent], RunRecord, RunManager]:
    request = RunRequest(
        spec=SPEC, user_input="Weather in Oslo?", workspace_id="ws_a", agent_id="agent_1", run_id=run_id
    )
    # flush every event on its own (many small batches); keep no finished run in memory: reads hit the store
    async with RunManager(run_store, flush_interval_s=0.0, keep_finished=0) as manager:
        started = await manager.start(request, model=model, tools=[weather])
        live = [event async for event in manager.subscribe(started)]
        record = await manager.wait(started)
        replayed = [event async for event in manager.subscribe(started)]  # from the store: the run left memory
        assert replayed == live
        assert await manager.get(started) == record
    model.assert_complete()
    return live, record, manager


def outcome(events: list[RunEvent], record: RunRecord) -> dict[str, Any]:
    """What must be the same on every store (ids, times and durations differ per run)."""
    return {
        "events": [(event_type(e), e.seq) for e in events],
        "text": "".join(e.content for e in events if isinstance(e, ContentEvent)),
        "record": (record.status, record.output, record.error_code, record.model, record.kind, record.agent_id),
        "usage": (record.prompt_tokens, record.completion_tokens, record.total_tokens),
        "steps": [step["kind"] for step in record.steps],
    }


async def test_run_manager_records_the_same_run_on_every_store(run_store: ContractStore) -> None:
    model = ScriptedModelClient(
        [
            [ToolCallReady(WEATHER_CALL), UsageReport(10, 3), Finish("tool_calls")],
            [TextDelta("Sunny "), TextDelta("in Oslo."), UsageReport(20, 4), Finish("stop")],
        ]
    )
    events, record, _ = await run_on(run_store, model, "run_weather")
    assert outcome(events, record) == {
        # a short answer in a round with a tool on offer is held until the round ends: one content event
        "events": [
            (k, i) for i, k in enumerate(("execution", "thinking", "tool_start", "tool_end", "content", "done"), 1)
        ],
        "text": "Sunny in Oslo.",
        "record": ("succeeded", "Sunny in Oslo.", None, "scripted/model", "agent", "agent_1"),
        "usage": (30, 7, 37),
        "steps": ["model", "tool", "model"],
    }
    assert await run_store.list_events("run_weather") == events
    assert await run_store.list_events("run_weather", after_seq=3) == events[3:]
    assert await run_store.get_run("run_weather") == record
    assert record.finished_at is not None and record.finished_at >= record.started_at


async def test_run_manager_records_a_model_failure_the_same_on_every_store(run_store: ContractStore) -> None:
    model = ScriptedModelClient([ModelError("model call failed (scripted): provider unavailable")])
    events, record, _ = await run_on(run_store, model, "run_failing")
    assert outcome(events, record) == {
        "events": [("execution", 1), ("error", 2)],
        "text": "",
        "record": ("failed", None, "model_error", "scripted/model", "agent", "agent_1"),
        "usage": (0, 0, 0),
        "steps": [],  # a call that failed before any event records no step
    }
    error = events[-1]
    assert isinstance(error, ErrorEvent) and "provider unavailable" in error.message
    assert await run_store.list_events("run_failing") == events
    assert await run_store.get_run("run_failing") == record

"""The agent loop driven through litellm against a scripted OpenAI-compatible server.

Each test asserts the whole event sequence and the stored run (real SQLite).
"""

from __future__ import annotations

import anyio
import pytest

from engine.agent.knowledge_tool import KnowledgeSearchTool
from engine.agent.spec import AgentSpec
from engine.agent.tools import function_tool
from engine.db.run_store import SqlRunStore
from engine.errors import ModelError
from engine.events import CitationEvent, DoneEvent, ErrorEvent, ToolEndEvent, ToolStartEvent
from engine.llm import Finish, Message, ModelRequest, TextDelta
from engine.models.litellm_client import LiteLLMModelClient
from engine.runs import RunManager
from tests.agent.helpers import API_KEY, ask, assert_seq, chunk, collect, compact, kinds, other_tasks
from tests.helpers.openai_server import Call, Reply, Server

pytestmark = pytest.mark.anyio


def client(server: Server, **kw: float) -> LiteLLMModelClient:
    return LiteLLMModelClient(api_base=server.base_url, api_key=API_KEY, **kw)


def spec(**kw: object) -> AgentSpec:
    base: dict[str, object] = {"name": "tester", "model": "openai/scripted", "tools": ()}
    return AgentSpec(**{**base, **kw})  # type: ignore[arg-type]


@function_tool
def lookup(city: str) -> str:
    """Look up the weather of a city.

    Args:
        city: City name.
    """
    return f"Sunny in {city}"


class PolicySearcher:
    """Keyword-overlap search over a few real policy texts (a real computation, not a canned answer)."""

    def __init__(self) -> None:
        self.docs = [
            chunk("Refunds are accepted within 30 days of purchase. Items must be unused.", n=1, file_name="policy.md"),
            chunk("Shipping takes five business days. Express shipping costs extra.", n=2, file_name="shipping.md"),
        ]
        self.queries: list[tuple[str, str, tuple[str, ...]]] = []

    async def search(self, query: str, *, workspace_id: str, kb_ids: tuple[str, ...], top_k: int):  # type: ignore[no-untyped-def]
        self.queries.append((query, workspace_id, kb_ids))
        words = set(query.lower().split())
        scored = [(len(words & set(d.chunk.text.lower().replace(".", "").split())), d) for d in self.docs]
        return [d for s, d in sorted(scored, key=lambda x: -x[0]) if s > 0][:top_k]


async def test_text_and_reasoning_stream(manager: RunManager, store: SqlRunStore, server: Server) -> None:
    server.script = [Reply(text="The answer is 42.", reasoning="Thinking hard", split=3)]
    run_id = await manager.start(ask(spec(), "question?", "ws_a"), model=client(server), tools=[])
    events = await collect(manager, run_id)
    assert kinds(events) == ["execution"] + ["thinking"] * 3 + ["content"] * 3 + ["done"]
    assert_seq(events, run_id)
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.output == "The answer is 42."
    assert (done.token_usage.prompt, done.token_usage.completion, done.token_usage.total) == (10, 5, 15)
    record = await manager.wait(run_id)
    stored = await store.get_run(run_id)
    assert stored is not None and stored == record
    assert (stored.status, stored.output, stored.total_tokens, stored.error) == (
        "succeeded",
        "The answer is 42.",
        15,
        None,
    )
    assert [s["kind"] for s in stored.steps] == ["model"]
    assert await store.list_events(run_id) == events
    assert server.requests[0]["messages"] == [{"role": "user", "content": "question?"}]
    assert server.requests[0]["model"] == "scripted" and server.requests[0]["stream"] is True


async def test_knowledge_search_and_citations(manager: RunManager, store: SqlRunStore, server: Server) -> None:
    searcher = PolicySearcher()
    server.script = [
        Reply(calls=(Call("call_1", "knowledge_search", '{"query": "refund purchase"}'),)),
        Reply(text="Refunds are accepted within 30 days [1]. Delivery is by drone [7]."),
    ]
    agent = spec(tools=("knowledge_search",), kb_ids=("kb_1",))
    tools = [KnowledgeSearchTool(searcher)]
    run_id = await manager.start(ask(agent, "refund?", "ws_a"), model=client(server), tools=tools)
    events = await collect(manager, run_id)
    assert compact(events) == ["execution", "thinking*", "tool_start", "tool_end", "content*", "citation", "done"]
    assert_seq(events, run_id)
    start, end = events[2], events[3]
    assert isinstance(start, ToolStartEvent) and start.arguments == {"query": "refund purchase"}
    assert isinstance(end, ToolEndEvent) and end.summary == "1 passage from policy.md" and not end.is_error
    citation = next(e for e in events if isinstance(e, CitationEvent))
    assert (citation.index, citation.chunk_id, citation.file_name, citation.page) == (
        1,
        "chunk-policy.md-1",
        "policy.md",
        1,
    )
    assert citation.quote == "Refunds are accepted within 30 days of purchase."  # [7] was never retrieved
    assert searcher.queries == [("refund purchase", "ws_a", ("kb_1",))]
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_1"
    assert tool_message["content"].startswith("[1] source: policy.md, page 1\nRefunds are accepted")
    assert "[1]" in server.requests[0]["messages"][0]["content"]  # the system prompt asks for [n] markers
    stored = await store.get_run(run_id)
    assert stored is not None and [s["kind"] for s in stored.steps] == ["model", "tool", "model"]
    assert stored.steps[1]["arguments"] == {"query": "refund purchase"} and stored.total_tokens == 30


async def test_parallel_tool_calls_run_concurrently(manager: RunManager, server: Server) -> None:
    ping_seen, pong_seen = anyio.Event(), anyio.Event()

    @function_tool
    async def ping() -> str:
        """Needs pong to run at the same time."""
        ping_seen.set()
        with anyio.fail_after(3):
            await pong_seen.wait()
        return "ping ok"

    @function_tool
    async def pong() -> str:
        """Needs ping to run at the same time."""
        pong_seen.set()
        with anyio.fail_after(3):
            await ping_seen.wait()
        return "pong ok"

    server.script = [Reply(calls=(Call("a", "ping", "{}"), Call("b", "pong", ""))), Reply(text="both ok")]
    run_id = await manager.start(ask(spec(), "go", "ws"), model=client(server), tools=[ping, pong])
    events = await collect(manager, run_id)
    assert compact(events) == [
        "execution", "thinking*", "tool_start", "tool_start", "tool_end", "tool_end", "content*", "done",
    ]  # fmt: skip
    ends = [e for e in events if isinstance(e, ToolEndEvent)]
    assert [(e.id, e.summary, e.is_error) for e in ends] == [("a", "ping ok", False), ("b", "pong ok", False)]
    tool_messages = [m for m in server.requests[1]["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [("a", "ping ok"), ("b", "pong ok")]


@pytest.mark.parametrize(
    ("call", "summary", "told_model"),
    [
        (Call("c1", "lookup", '{"city": "Par'), "invalid JSON arguments", "Invalid JSON in tool arguments"),
        (Call("c1", "delete_everything", "{}"), "unknown tool", "Unknown tool 'delete_everything'"),
        (Call("c1", "lookup", '{"town": "Paris"}'), "invalid arguments", "Invalid arguments"),
    ],
)
async def test_bad_tool_calls_go_back_to_the_model(
    manager: RunManager, store: SqlRunStore, server: Server, call: Call, summary: str, told_model: str
) -> None:
    server.script = [Reply(calls=(call,)), Reply(text="Sorry, let me answer without it.")]
    run_id = await manager.start(ask(spec(), "weather?", "ws"), model=client(server), tools=[lookup])
    events = await collect(manager, run_id)
    assert compact(events) == ["execution", "thinking*", "tool_start", "tool_end", "content*", "done"]
    end = events[3]
    assert isinstance(end, ToolEndEvent) and (end.name, end.summary, end.is_error) == (call.name, summary, True)
    assert server.requests[1]["messages"][-1]["content"].startswith(told_model)
    stored = await store.get_run(run_id)
    assert stored is not None and stored.status == "succeeded" and stored.steps[1]["is_error"] is True


async def test_provider_error_is_a_model_error_without_the_key(
    manager: RunManager, store: SqlRunStore, server: Server
) -> None:
    failure = Reply(status=500, text=f"upstream exploded for key={API_KEY} Bearer {API_KEY}")
    server.script = [failure, failure]  # one retry (the client's default), then the run fails
    run_id = await manager.start(ask(spec(), "hi", "ws"), model=client(server), tools=[])
    events = await collect(manager, run_id)
    assert kinds(events) == ["execution", "error"]
    error = events[-1]
    assert isinstance(error, ErrorEvent) and error.code == "model_error" and "exploded" in error.message
    assert API_KEY not in error.message and "0123456789" not in error.message
    assert len(server.requests) == 2
    stored = await store.get_run(run_id)
    assert stored is not None and (stored.status, stored.error_code) == ("failed", "model_error")
    assert stored.error is not None and API_KEY not in stored.error


async def test_stalled_stream_fails_the_run(manager: RunManager, server: Server) -> None:
    server.script = [Reply(text="partial answer that never ends", stall_after_chunks=2)]
    model = client(server, stall_timeout_s=0.5)
    run_id = await manager.start(ask(spec(), "hi", "ws"), model=model, tools=[])
    events = await collect(manager, run_id)
    assert kinds(events) == ["execution", "content", "error"]
    error = events[-1]
    assert isinstance(error, ErrorEvent) and error.code == "model_error" and "stalled" in error.message


async def test_endless_tool_calls_stop_at_max_steps(manager: RunManager, store: SqlRunStore, server: Server) -> None:
    server.default = lambda i: Reply(calls=(Call(f"c{i}", "lookup", '{"city": "Paris"}'),))
    run_id = await manager.start(ask(spec(max_steps=3), "?", "w"), model=client(server), tools=[lookup])
    events = await collect(manager, run_id)
    assert kinds(events) == [
        "execution", "thinking", "tool_start", "tool_end", "thinking", "tool_start", "tool_end", "error",
    ]  # fmt: skip
    assert isinstance(events[-1], ErrorEvent) and events[-1].code == "max_steps"
    assert len(server.requests) == 3
    stored = await store.get_run(run_id)
    assert stored is not None and (stored.status, stored.error_code, stored.total_tokens) == ("failed", "max_steps", 45)


async def test_token_budget_ends_the_run(manager: RunManager, store: SqlRunStore, server: Server) -> None:
    server.default = lambda i: Reply(calls=(Call(f"c{i}", "lookup", '{"city": "Oslo"}'),), usage=(10, 5))
    agent = spec(max_tokens=20)
    run_id = await manager.start(ask(agent, "?", "w"), model=client(server), tools=[lookup])
    events = await collect(manager, run_id)
    assert kinds(events) == ["execution", "thinking", "tool_start", "tool_end", "error"]
    assert isinstance(events[-1], ErrorEvent) and events[-1].code == "max_tokens"
    assert [r.get("max_tokens") for r in server.requests] == [20, 5]  # the remaining budget caps each call
    stored = await store.get_run(run_id)
    assert stored is not None and (stored.status, stored.error_code, stored.total_tokens) == (
        "failed",
        "max_tokens",
        30,
    )


async def test_run_timeout(manager: RunManager, store: SqlRunStore, server: Server) -> None:
    server.script = [Reply(text="slow " * 20, split=20, delay_s=0.15)]
    run_id = await manager.start(ask(spec(timeout_s=0.5), "?", "w"), model=client(server), tools=[])
    events = await collect(manager, run_id)
    assert kinds(events)[0] == "execution" and set(kinds(events)[1:-1]) <= {"content"}
    assert isinstance(events[-1], ErrorEvent) and events[-1].code == "timeout"
    assert_seq(events, run_id)
    stored = await store.get_run(run_id)
    assert stored is not None and (stored.status, stored.error_code) == ("failed", "timeout")
    assert await store.list_events(run_id) == events


async def test_cancel_mid_stream(manager: RunManager, store: SqlRunStore, server: Server) -> None:
    server.script = [Reply(text="word " * 50, split=50, delay_s=0.05)]
    run_id = await manager.start(ask(spec(), "?", "w"), model=client(server), tools=[])
    events = []
    async for event in manager.subscribe(run_id):
        events.append(event)
        if len(events) == 3:
            assert await manager.cancel(run_id) is True
    assert kinds(events)[:3] == ["execution", "content", "content"] and kinds(events)[-1] == "error"
    assert set(kinds(events)[3:-1]) <= {"content"}
    assert isinstance(events[-1], ErrorEvent) and events[-1].code == "cancelled"
    assert_seq(events, run_id)
    record = await manager.wait(run_id)
    assert record.status == "cancelled" and record.error_code == "cancelled"
    stored = await store.get_run(run_id)
    assert stored is not None and stored.status == "cancelled"
    assert await store.list_events(run_id) == events
    assert manager.running() == [] and not [t for t in other_tasks() if t.get_name().startswith("run ")]
    assert await manager.cancel(run_id) is False


async def test_shutdown_cancels_running_runs(store: SqlRunStore, server: Server) -> None:
    server.script = [Reply(text="word " * 50, split=50, delay_s=0.05)]
    async with RunManager(store) as runs:
        run_id = await runs.start(ask(spec(), "?", "w"), model=client(server), tools=[])
        await anyio.sleep(0.2)
    assert runs.running() == [] and not [t for t in other_tasks() if t.get_name().startswith("run ")]
    stored = await store.get_run(run_id)
    assert stored is not None and stored.status == "cancelled"
    stored_events = await store.list_events(run_id)
    assert kinds(stored_events)[0] == "execution" and kinds(stored_events)[-1] == "error"
    assert_seq(stored_events, run_id)


def _no_choice_replies() -> dict[str, Reply]:
    base = {"id": "chatcmpl-empty", "created": 1700000000, "model": "scripted"}
    usage = {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7}
    return {
        "stream of choices [] then usage": Reply(no_choices=True),
        "stream of choices [] only": Reply(no_choices=True, usage=None),
        "completion object without choices": Reply(
            raw=({**base, "object": "chat.completion", "choices": [], "usage": usage},)
        ),
        "empty delta without finish": Reply(
            raw=({**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]},)
        ),
        "json body without choices": Reply(json_body={**base, "object": "chat.completion", "choices": []}),
    }


@pytest.mark.parametrize("case", list(_no_choice_replies()))
async def test_adapter_refuses_a_stream_without_choices(server: Server, case: str) -> None:
    server.script = [_no_choice_replies()[case]]
    request = ModelRequest(model="openai/scripted", messages=(Message(role="user", content="hi"),))
    seen: list[object] = []
    with pytest.raises(ModelError, match=r"no answer \(no choices\)"):
        async for event in client(server).stream(request):
            seen.append(event)
    assert not [e for e in seen if isinstance(e, (TextDelta, Finish))]


_FINISH_ONLY = {
    "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
    "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
}  # fmt: skip


@pytest.mark.parametrize(
    "reply",
    [
        Reply(text=""),  # a role chunk with "" content, finish "stop", then a usage-only chunk (choices [])
        Reply(text="Fine.", usage=(3, 1)),  # real content, then the usage-only chunk
        Reply(raw=(_FINISH_ONLY,)),  # no output, but the provider's own finish reason
    ],
    ids=["empty text with finish", "text then usage-only chunk", "finish reason only"],
)
async def test_adapter_accepts_answers_that_had_a_choice(server: Server, reply: Reply) -> None:
    server.script = [reply]
    request = ModelRequest(model="openai/scripted", messages=(Message(role="user", content="hi"),))
    events = [e async for e in client(server).stream(request)]
    assert isinstance(events[-1], Finish)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == reply.text


async def test_no_choices_fails_the_run_with_model_error(
    manager: RunManager, store: SqlRunStore, server: Server
) -> None:
    server.script = [Reply(no_choices=True)]
    run_id = await manager.start(ask(spec(), "hi", "ws"), model=client(server), tools=[])
    events = await collect(manager, run_id)
    assert kinds(events) == ["execution", "error"]
    assert_seq(events, run_id)
    error = events[-1]
    assert isinstance(error, ErrorEvent) and error.code == "model_error"
    assert "no answer (no choices)" in error.message
    stored = await store.get_run(run_id)
    assert stored is not None and (stored.status, stored.error_code, stored.output) == ("failed", "model_error", None)
    assert len(server.requests) == 1

"""One behavioural contract for every ``ModelClient`` adapter.

``ScriptedModelClient`` and ``LiteLLMModelClient`` (against the scripted OpenAI-compatible server in
tests/helpers/openai_server.py) follow the same logical script, handed to each by a small per-adapter
``Scenario`` builder: both must stream the same normalised events. ``ExtractiveModelClient`` cannot follow a
script; it is held to the generic stream invariants and to its own two moves (search, then answer).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from engine.agent.passages import render_passages
from engine.errors import ModelError
from engine.llm import (
    Finish,
    Message,
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolSpec,
    UsageReport,
)
from engine.models.extractive import SEARCH_TOOL, ExtractiveModelClient
from engine.models.litellm_client import LiteLLMModelClient
from engine.ports import ModelClient
from engine.testing import ScriptedModelClient
from tests.agent.helpers import API_KEY, chunk
from tests.helpers.openai_server import Call, Reply, Server, serve

pytestmark = pytest.mark.anyio

SCRIPTABLE = ["scripted", "litellm"]


@dataclass(frozen=True)
class Turn:
    """One logical model reply, given to every adapter in its own terms."""

    text: str = ""
    calls: tuple[ToolCall, ...] = ()
    usage: tuple[int, int] = (10, 5)
    split: int = 3  # pieces per text / argument string
    fail: bool = False  # the provider fails instead of answering


ANSWER = Turn(text="Refunds are accepted within 30 days of purchase [1]. Items must be unused.", usage=(42, 9), split=4)
TOOL_CALLS = Turn(
    calls=(
        ToolCall(id="call_search", name="knowledge_search", arguments='{"query": "refund policy", "top_k": 3}'),
        ToolCall(id="call_weather", name="lookup", arguments='{"city": "Zürich", "units": "metric"}'),
    ),
    usage=(57, 21),
)
FAILURE = Turn(fail=True)
TURNS = {"answer": ANSWER, "tool_calls": TOOL_CALLS}

TOOLS = (
    ToolSpec(
        name="knowledge_search",
        description="Search the knowledge base.",
        parameters={"type": "object", "properties": {"query": {"type": "string"}, "top_k": {"type": "integer"}}},
    ),
    ToolSpec(
        name="lookup",
        description="Look up the weather of a city.",
        parameters={"type": "object", "properties": {"city": {"type": "string"}, "units": {"type": "string"}}},
    ),
)
QUESTION = "Within how many days of purchase are refunds accepted?"


def request(*messages: Message, tools: tuple[ToolSpec, ...] = TOOLS) -> ModelRequest:
    return ModelRequest(
        model="openai/scripted", messages=messages or (Message(role="user", content=QUESTION),), tools=tools
    )


def pieces(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i : i + size] for i in range(0, len(text), size)]


# ---- per-adapter scenario builders --------------------------------------------------------------------------------


class Scenario(Protocol):
    """Turns logical ``Turn``s into a client of one adapter that answers them, one turn per call."""

    def client(self, turns: Sequence[Turn]) -> ModelClient: ...

    def sent(self) -> list[list[tuple[str, str, str | None]]]:
        """(role, content, tool_call_id) of every message the provider received, per call."""
        ...


class ScriptedScenario:
    def __init__(self) -> None:
        self._client = ScriptedModelClient([])

    def client(self, turns: Sequence[Turn]) -> ModelClient:
        self._client = ScriptedModelClient([self._events(turn) for turn in turns])
        return self._client

    @staticmethod
    def _events(turn: Turn) -> Sequence[ModelEvent] | ModelError:
        if turn.fail:
            return ModelError("model call failed (scripted): provider unavailable")
        return [
            *(TextDelta(p) for p in pieces(turn.text, turn.split) if turn.text),
            *(ToolCallReady(call) for call in turn.calls),
            UsageReport(*turn.usage),
            Finish("tool_calls" if turn.calls else "stop"),
        ]

    def sent(self) -> list[list[tuple[str, str, str | None]]]:
        return [[(m.role, m.content, m.tool_call_id) for m in call.messages] for call in self._client.calls]


class LiteLLMScenario:
    def __init__(self, server: Server) -> None:
        self._server = server

    def client(self, turns: Sequence[Turn]) -> ModelClient:
        self._server.script = [self._reply(turn) for turn in turns]
        self._server.requests.clear()
        return LiteLLMModelClient(
            api_base=self._server.base_url, api_key=API_KEY, timeout_s=10, stall_timeout_s=5, max_retries=0
        )

    @staticmethod
    def _reply(turn: Turn) -> Reply:
        if turn.fail:
            return Reply(status=500, text="provider unavailable")
        calls = tuple(Call(c.id, c.name, c.arguments) for c in turn.calls)
        return Reply(text=turn.text, calls=calls, usage=turn.usage, split=turn.split)

    def sent(self) -> list[list[tuple[str, str, str | None]]]:
        return [
            [(m["role"], m.get("content") or "", m.get("tool_call_id")) for m in body["messages"]]
            for body in self._server.requests
        ]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from serve()


def make_scenario(kind: str, server: Server) -> Scenario:
    return ScriptedScenario() if kind == "scripted" else LiteLLMScenario(server)


@pytest.fixture(params=SCRIPTABLE)
def scenario(request: pytest.FixtureRequest, server: Server) -> Scenario:
    return make_scenario(request.param, server)


# ---- normal form and invariants -----------------------------------------------------------------------------------


async def collect(stream: AsyncIterator[ModelEvent]) -> list[ModelEvent]:
    return [event async for event in stream]


def normalise(events: Sequence[ModelEvent]) -> dict[str, Any]:
    """What a stream means, independent of how the provider chunked it."""
    return {
        "text": "".join(e.text for e in events if isinstance(e, TextDelta)),
        "calls": [(e.call.id, e.call.name, e.call.arguments) for e in events if isinstance(e, ToolCallReady)],
        "usage": [(e.prompt_tokens, e.completion_tokens) for e in events if isinstance(e, UsageReport)],
        "finish": [e.reason for e in events if isinstance(e, Finish)],
        "shape": shape(events),
    }


def shape(events: Sequence[ModelEvent]) -> list[str]:
    """Event kinds with runs of text deltas collapsed to ``text*``."""
    out: list[str] = []
    for event in events:
        kind = type(event).__struct_config__.tag
        assert isinstance(kind, str)
        kind = kind + "*" if isinstance(event, TextDelta | ReasoningDelta) else kind
        if not (kind.endswith("*") and out and out[-1] == kind):
            out.append(kind)
    return out


def expected(turn: Turn) -> dict[str, Any]:
    return {
        "text": turn.text,
        "calls": [(c.id, c.name, c.arguments) for c in turn.calls],
        "usage": [turn.usage],
        "finish": ["tool_calls" if turn.calls else "stop"],
        "shape": [*(["text*"] if turn.text else []), *(["tool_call"] * len(turn.calls)), "usage", "finish"],
    }


def assert_well_formed(events: Sequence[ModelEvent]) -> None:
    """The ``ModelClient`` contract every stream keeps."""
    finishes = [i for i, e in enumerate(events) if isinstance(e, Finish)]
    assert finishes == [len(events) - 1], "exactly one Finish, and it is the last event"
    assert all(isinstance(e, TextDelta | ReasoningDelta | ToolCallReady | UsageReport) for e in events[:-1])
    assert sum(isinstance(e, UsageReport) for e in events) <= 1
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.reason == "tool_calls") == any(isinstance(e, ToolCallReady) for e in events)
    for event in events:
        if isinstance(event, ToolCallReady):
            assert event.call.id and event.call.name
            json.loads(event.call.arguments)  # complete, parseable arguments, not a fragment


# ---- scripted vs litellm: one script, one meaning -----------------------------------------------------------------


@pytest.mark.parametrize("turn_name", TURNS)
async def test_stream_follows_the_script(scenario: Scenario, turn_name: str) -> None:
    turn = TURNS[turn_name]
    events = await collect(scenario.client([turn]).stream(request()))
    assert normalise(events) == expected(turn)
    assert_well_formed(events)


@pytest.mark.parametrize("turn_name", TURNS)
async def test_scripted_and_litellm_stream_the_same_sequence(server: Server, turn_name: str) -> None:
    turn = TURNS[turn_name]
    streams = [await collect(make_scenario(kind, server).client([turn]).stream(request())) for kind in SCRIPTABLE]
    scripted, litellm = (normalise(events) for events in streams)
    assert scripted == litellm
    assert scripted["finish"] == ["tool_calls" if turn.calls else "stop"]


async def test_text_answer_is_streamed_in_several_deltas(scenario: Scenario) -> None:
    events = await collect(scenario.client([ANSWER]).stream(request()))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) >= 2 and all(deltas)
    assert "".join(deltas) == ANSWER.text


async def test_tool_call_arguments_split_across_deltas_arrive_whole(scenario: Scenario) -> None:
    events = await collect(scenario.client([TOOL_CALLS]).stream(request()))
    calls = [e.call for e in events if isinstance(e, ToolCallReady)]
    assert [c.id for c in calls] == ["call_search", "call_weather"]  # in the order the model gave them
    assert [json.loads(c.arguments) for c in calls] == [
        {"query": "refund policy", "top_k": 3},
        {"city": "Zürich", "units": "metric"},
    ]
    assert not any(isinstance(e, TextDelta) for e in events)


async def test_provider_failure_raises_model_error(scenario: Scenario) -> None:
    seen: list[ModelEvent] = []
    with pytest.raises(ModelError) as failure:
        async for event in scenario.client([FAILURE]).stream(request()):
            seen.append(event)
    assert failure.value.code == "model_error"
    assert not any(isinstance(e, Finish) for e in seen)  # a failed call never looks finished
    assert API_KEY not in str(failure.value)


async def test_client_stays_usable_after_a_failure(scenario: Scenario) -> None:
    client = scenario.client([FAILURE, ANSWER])
    with pytest.raises(ModelError):
        await collect(client.stream(request()))
    assert normalise(await collect(client.stream(request()))) == expected(ANSWER)


async def test_each_call_gets_the_next_reply_and_sends_the_whole_conversation(scenario: Scenario) -> None:
    client = scenario.client([TOOL_CALLS, ANSWER])
    first = await collect(client.stream(request()))
    calls = tuple(e.call for e in first if isinstance(e, ToolCallReady))
    conversation = (
        Message(role="user", content=QUESTION),
        Message(role="assistant", tool_calls=calls),
        Message(role="tool", content="[1] source: policy.md\nRefunds within 30 days.", tool_call_id="call_search"),
        Message(role="tool", content="Sunny in Zürich", tool_call_id="call_weather"),
    )
    second = await collect(client.stream(request(*conversation)))
    assert normalise(first) == expected(TOOL_CALLS) and normalise(second) == expected(ANSWER)
    assert scenario.sent() == [
        [("user", QUESTION, None)],
        [(m.role, m.content, m.tool_call_id) for m in conversation],
    ]


# ---- every adapter, the extractive model included -----------------------------------------------------------------


def extractive_requests() -> list[ModelRequest]:
    passages = render_passages([chunk("Refunds are accepted within 30 days of purchase.", n=1)], [1])
    call = ToolCall(id="call_extractive_search", name=SEARCH_TOOL, arguments=json.dumps({"query": QUESTION}))
    return [
        request(),  # offered knowledge_search, no result yet: searches
        request(
            Message(role="user", content=QUESTION),
            Message(role="assistant", tool_calls=(call,)),
            Message(role="tool", content=passages, tool_call_id=call.id),
        ),  # the results are in: answers
        request(tools=()),  # nothing to search with: says so
    ]


@pytest.mark.parametrize("kind", [*SCRIPTABLE, "extractive"])
async def test_every_stream_is_well_formed(kind: str, server: Server) -> None:
    if kind == "extractive":
        client: ModelClient = ExtractiveModelClient()
        streams = [await collect(client.stream(r)) for r in extractive_requests()]
    else:
        scripted = make_scenario(kind, server).client([ANSWER, TOOL_CALLS])
        streams = [await collect(scripted.stream(request())) for _ in range(2)]
    assert len(streams) >= 2
    for events in streams:
        assert_well_formed(events)
        assert len(normalise(events)["usage"]) == 1  # every adapter reports usage (the run's token budget needs it)


async def test_extractive_asks_knowledge_search_with_the_question_first() -> None:
    events = await collect(ExtractiveModelClient().stream(extractive_requests()[0]))
    assert_well_formed(events)
    calls = [e.call for e in events if isinstance(e, ToolCallReady)]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [(SEARCH_TOOL, {"query": QUESTION})]
    assert normalise(events)["finish"] == ["tool_calls"] and normalise(events)["text"] == ""


async def test_extractive_answers_from_the_tool_result_with_usage() -> None:
    events = await collect(ExtractiveModelClient().stream(extractive_requests()[1]))
    assert_well_formed(events)
    meaning = normalise(events)
    assert meaning["calls"] == [] and meaning["finish"] == ["stop"]
    assert '"Refunds are accepted within 30 days of purchase." [1]' in meaning["text"]
    assert meaning["shape"] == ["text*", "usage", "finish"]
    (prompt, completion), *_ = meaning["usage"]
    assert prompt > 0 and completion > 0


async def test_extractive_without_a_search_tool_answers_in_text() -> None:
    events = await collect(ExtractiveModelClient().stream(extractive_requests()[2]))
    assert_well_formed(events)
    meaning = normalise(events)
    assert meaning["calls"] == [] and meaning["finish"] == ["stop"] and "knowledge base" in meaning["text"]

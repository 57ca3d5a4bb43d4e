"""Run events: the one grammar for chat, agent and trigger runs.

Frozen msgspec Structs in a tagged union (tag field ``type``). Every run streams exactly one
terminal event (``done`` or ``error``). ``seq`` is monotonic per run, starting at 1; it is the SSE
``id`` and the resume point. Only ``api/`` encodes these for the wire.

The grammar is a superset of two published ones: PromptRails' (``execution {execution_id,
user_message_id}``, ``thinking {content}`` for text between tool rounds, ``content {content}`` for deltas of
the final answer, ``tool_start``, ``tool_end``, ``done``, ``error``) and Prodgy's assistant stream
(``session`` first, ``thinking`` while working, one ``ai_response`` with the whole answer, its sources and
metadata, then ``done``). Clients ignore the names they do not know.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.types import TokenUsage


class RunEventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    run_id: str
    seq: int
    ts: float  # unix seconds


class ExecutionEvent(RunEventBase, frozen=True, kw_only=True, tag="execution"):
    """The run started (always the first event)."""

    execution_id: str  # the run id, under PromptRails' name
    agent: str
    model: str
    session_id: str | None = None
    user_message_id: str | None = None  # the stored chat message this run answers


class SessionEvent(RunEventBase, frozen=True, kw_only=True, tag="session"):
    """The chat session the run belongs to (second event of a chat run), for conversation continuity."""

    session_id: str


class ThinkingEvent(RunEventBase, frozen=True, kw_only=True, tag="thinking"):
    """Reasoning: a model's reasoning deltas, text it wrote before calling tools, or what it is doing now."""

    content: str


class ToolStartEvent(RunEventBase, frozen=True, kw_only=True, tag="tool_start"):
    id: str
    name: str
    arguments: dict[str, Any]


class ToolEndEvent(RunEventBase, frozen=True, kw_only=True, tag="tool_end"):
    id: str
    name: str
    summary: str
    is_error: bool = False


class ContentEvent(RunEventBase, frozen=True, kw_only=True, tag="content"):
    """A delta of the final answer."""

    content: str


class CitationEvent(RunEventBase, frozen=True, kw_only=True, tag="citation"):
    index: int  # the [n] marker in the answer
    chunk_id: str
    kb_id: str = ""  # the file's knowledge base (the download route's path); "" in runs before it was recorded
    file_id: str
    file_name: str
    page: int | None
    quote: str


class AnswerSource(msgspec.Struct, frozen=True, kw_only=True):
    """A passage the answer cites (the same values as its ``citation`` event)."""

    index: int
    chunk_id: str
    kb_id: str = ""
    file_id: str
    file_name: str
    page: int | None
    quote: str


class AnswerMetadata(msgspec.Struct, frozen=True, kw_only=True):
    execution_id: str  # the run
    session_id: str | None
    model: str
    token_usage: TokenUsage


class AnswerEvent(RunEventBase, frozen=True, kw_only=True, tag="ai_response"):
    """The whole answer of a chat run with its sources, just before ``done`` (Prodgy's assistant frame)."""

    content: str
    sources: tuple[AnswerSource, ...]
    metadata: AnswerMetadata


class StepStartEvent(RunEventBase, frozen=True, kw_only=True, tag="step_start"):
    """A workflow step starts; its own events (an agent's content and tool calls...) follow, then ``step_end``."""

    step_id: str
    kind: str  # prompt | agent | search | tool | condition | transform | emit
    status: str = "running"
    input: Any = None  # what the step runs with (its templates rendered); None when too big to stream


class StepEndEvent(RunEventBase, frozen=True, kw_only=True, tag="step_end"):
    """A workflow step ended: ``succeeded``, ``failed`` or ``skipped`` (a branch not taken)."""

    step_id: str
    kind: str
    status: str
    duration_ms: float
    summary: str  # a short line about the output ("3 hits", the first words of a text)
    output: Any = None  # the step's output; None when too big to stream (the run record keeps it whole)
    error: str | None = None


class DoneEvent(RunEventBase, frozen=True, kw_only=True, tag="done"):
    output: str
    token_usage: TokenUsage
    time: float  # seconds from start to end


class ErrorEvent(RunEventBase, frozen=True, kw_only=True, tag="error"):
    message: str
    code: str  # model_error | max_steps | max_tokens | timeout | cancelled | internal (workflows: step_failed,
    # invalid_output)


RunEvent = (
    ExecutionEvent
    | SessionEvent
    | ThinkingEvent
    | ToolStartEvent
    | ToolEndEvent
    | ContentEvent
    | CitationEvent
    | AnswerEvent
    | StepStartEvent
    | StepEndEvent
    | DoneEvent
    | ErrorEvent
)
TERMINAL_EVENT_TYPES = (DoneEvent, ErrorEvent)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[RunEvent] = msgspec.json.Decoder(RunEvent)


def event_type(event: RunEvent) -> str:
    """The event's wire name (its tag)."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def encode_event(event: RunEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> RunEvent:
    return _decoder.decode(data)

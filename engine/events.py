"""Run events: the one grammar for chat, agent and trigger runs.

Frozen msgspec Structs in a tagged union (tag field ``type``). Every run streams exactly one
terminal event (``done`` or ``error``). ``seq`` is monotonic per run, starting at 1; it is the SSE
``id`` and the resume point. Only ``api/`` encodes these for the wire.
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
    """The run started."""

    agent: str
    model: str
    session_id: str | None = None


class ThinkingEvent(RunEventBase, frozen=True, kw_only=True, tag="thinking"):
    text: str


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
    text: str


class CitationEvent(RunEventBase, frozen=True, kw_only=True, tag="citation"):
    index: int  # the [n] marker in the answer
    chunk_id: str
    file_id: str
    file_name: str
    page: int | None
    quote: str


class DoneEvent(RunEventBase, frozen=True, kw_only=True, tag="done"):
    output: str
    token_usage: TokenUsage
    time: float  # seconds from start to end


class ErrorEvent(RunEventBase, frozen=True, kw_only=True, tag="error"):
    message: str
    code: str  # model_error | max_steps | max_tokens | timeout | cancelled | internal


RunEvent = (
    ExecutionEvent
    | ThinkingEvent
    | ToolStartEvent
    | ToolEndEvent
    | ContentEvent
    | CitationEvent
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

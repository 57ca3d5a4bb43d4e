"""Model-side value types: chat messages, tool specs, and the events a ``ModelClient`` streams.

These are what a model adapter speaks. The agent loop turns ``ModelEvent``s into ``RunEvent``s
(``engine.events``); provider chunk shapes never leak past the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A complete tool call as the model asked for it. ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str


class Message(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Name, description and JSON schema of a tool's parameters, as sent to the model."""

    name: str
    description: str
    parameters: dict[str, Any]


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None


class TextDelta(msgspec.Struct, frozen=True, tag="text"):
    text: str


class ReasoningDelta(msgspec.Struct, frozen=True, tag="reasoning"):
    text: str


class ToolCallReady(msgspec.Struct, frozen=True, tag="tool_call"):
    """Emitted once per tool call, after the stream assembled all of its deltas."""

    call: ToolCall


class UsageReport(msgspec.Struct, frozen=True, tag="usage"):
    prompt_tokens: int
    completion_tokens: int


class Finish(msgspec.Struct, frozen=True, tag="finish"):
    reason: str  # "stop", "tool_calls", "length", ...


ModelEvent = TextDelta | ReasoningDelta | ToolCallReady | UsageReport | Finish


@dataclass(frozen=True)
class ModelEndpoint:
    """Where and as whom a configured model is called: a model configuration's opened credentials.

    Built server-side only (never from a request); the secrets are left out of ``repr`` so a log line or a
    traceback cannot carry them.
    """

    config_id: str
    version: str  # changes when the configuration changes (clients are cached per version)
    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    client_key: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.api_key, self.client_key, self.client_secret) if s)

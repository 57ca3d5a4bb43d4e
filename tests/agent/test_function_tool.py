"""function_tool: schema from type hints and docstring, validation errors as tool results."""

from __future__ import annotations

from typing import Literal

import msgspec
import pytest

from engine.agent.tools import function_tool, parse_arguments
from engine.ports import Tool, ToolContext

pytestmark = pytest.mark.anyio
CTX = ToolContext(run_id="run_1", workspace_id="ws_a", kb_ids=("kb_1",))


class Window(msgspec.Struct):
    start: int
    end: int


@function_tool
def count_words(text: str, unit: Literal["words", "chars"] = "words", window: Window | None = None) -> dict[str, int]:
    """Count the words or characters of a text.

    Args:
        text: The text to measure.
        unit: What to count.
        window: Optional slice of the text.
    """
    if window is not None:
        text = text[window.start : window.end]
    return {unit: len(text.split()) if unit == "words" else len(text)}


@function_tool(name="whoami")
async def who(ctx: ToolContext, shout: bool = False) -> str:
    """Tell the caller's workspace."""
    return ctx.workspace_id.upper() if shout else ctx.workspace_id


def test_schema_from_hints_and_docstring() -> None:
    assert isinstance(count_words, Tool)
    assert count_words.name == "count_words"
    assert count_words.description == "Count the words or characters of a text."
    assert count_words.parameters == {
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "The text to measure."},
            "unit": {"enum": ["chars", "words"], "default": "words", "description": "What to count."},
            "window": {
                "anyOf": [
                    {
                        "title": "Window",
                        "type": "object",
                        "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}},
                        "required": ["start", "end"],
                    },
                    {"type": "null"},
                ],
                "default": None,
                "description": "Optional slice of the text.",
            },
        },
        "required": ["text"],
        "additionalProperties": False,
    }
    assert "$ref" not in str(count_words.parameters)


async def test_sync_tool_runs_and_validates() -> None:
    ok = await count_words({"text": "one two three", "window": {"start": 0, "end": 7}}, CTX)
    assert (ok.content, ok.is_error) == ('{"words":2}', False)
    bad = await count_words({"text": 5}, CTX)
    assert bad.is_error and bad.summary == "invalid arguments" and "Expected `str`" in bad.content
    extra = await count_words({"text": "x", "workspace_id": "ws_b"}, CTX)
    assert extra.is_error and "workspace_id" in extra.content
    missing = await count_words({}, CTX)
    assert missing.is_error and "text" in missing.content


async def test_async_tool_gets_the_context_not_from_the_model() -> None:
    assert who.name == "whoami" and who.parameters["properties"] == {"shout": {"type": "boolean", "default": False}}
    assert (await who({"shout": True}, CTX)).content == "WS_A"
    assert (await who({"ctx": {"workspace_id": "ws_b"}}, CTX)).is_error


def test_parse_arguments() -> None:
    assert parse_arguments('{"a": 1}') == {"a": 1}
    assert parse_arguments("") == {}
    assert isinstance(parse_arguments('{"a": '), str)
    assert parse_arguments("[1, 2]") == "Tool arguments must be a JSON object."

"""History trimming keeps the system prompt and the newest whole turns."""

from __future__ import annotations

from engine.agent.context import fit_messages, message_tokens
from engine.llm import Message, ToolCall

MODEL = "openai/gpt-4o-mini"


def turn(i: int, words: int = 50) -> list[Message]:
    call = ToolCall(id=f"c{i}", name="knowledge_search", arguments='{"query": "x"}')
    return [
        Message(role="user", content=f"question {i} " + "word " * words),
        Message(role="assistant", content="", tool_calls=(call,)),
        Message(role="tool", content="passage " * words, tool_call_id=f"c{i}"),
        Message(role="assistant", content=f"answer {i}"),
    ]


def test_keeps_everything_that_fits() -> None:
    messages = [Message(role="system", content="Be brief."), *turn(1), *turn(2)]
    assert fit_messages(messages, MODEL, 10_000) == messages


def test_drops_oldest_whole_turns() -> None:
    system = Message(role="system", content="Be brief.")
    messages = [system, *turn(1), *turn(2), *turn(3)]
    per_turn = sum(message_tokens(m, MODEL) for m in turn(3))
    budget = message_tokens(system, MODEL) + 2 * per_turn + 5
    fitted = fit_messages(messages, MODEL, budget)
    assert fitted == [system, *turn(2), *turn(3)]
    assert sum(message_tokens(m, MODEL) for m in fitted) <= budget


def test_newest_turn_is_kept_even_if_too_long() -> None:
    messages = [Message(role="system", content="Be brief."), *turn(1), *turn(2, words=500)]
    assert fit_messages(messages, MODEL, 50) == [messages[0], *turn(2, words=500)]

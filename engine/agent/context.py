"""Fit a conversation into the model's context window: system prompt and the newest turns stay."""

from __future__ import annotations

from collections.abc import Sequence

from engine.llm import Message
from engine.tokens import count_tokens

MESSAGE_OVERHEAD = 4  # role and separators per message in chat formats


def message_tokens(message: Message, model: str) -> int:
    tokens = MESSAGE_OVERHEAD + count_tokens(message.content, model)
    for call in message.tool_calls:
        tokens += count_tokens(call.name, model) + count_tokens(call.arguments, model) + MESSAGE_OVERHEAD
    return tokens


def _turns(messages: Sequence[Message]) -> list[list[Message]]:
    # A turn starts at a user message; an assistant tool call and its tool results never split.
    turns: list[list[Message]] = []
    for message in messages:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def fit_messages(messages: Sequence[Message], model: str, budget_tokens: int) -> list[Message]:
    """Drop the oldest whole turns until the prompt fits ``budget_tokens``.

    System messages at the start and the newest turn are always kept (a prompt that still does
    not fit is sent as is and the provider decides).
    """
    head = 0
    while head < len(messages) and messages[head].role == "system":
        head += 1
    system, rest = list(messages[:head]), messages[head:]
    turns = _turns(rest)
    used = sum(message_tokens(m, model) for m in system)
    sizes = [sum(message_tokens(m, model) for m in turn) for turn in turns]
    keep_from = len(turns) - 1 if turns else 0
    total = used + (sizes[-1] if sizes else 0)
    while keep_from > 0 and total + sizes[keep_from - 1] <= budget_tokens:
        keep_from -= 1
        total += sizes[keep_from]
    return system + [m for turn in turns[keep_from:] for m in turn]

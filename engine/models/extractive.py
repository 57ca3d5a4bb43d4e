"""``ragline/extractive``: a built-in model so chat works with no provider configured.

It is registered as a litellm custom provider and so drives the same tool loop as any model:
with no search result yet, it asks for ``knowledge_search`` with the user's question; once the
results are in the conversation it answers with the best-matching sentences of those passages,
quoted verbatim with their ``[n]`` markers, and says plainly that no generative model is set up.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from engine.agent.passages import parse_passages
from engine.agent.textmatch import keywords, overlap, sentences
from engine.tokens import count_tokens

PROVIDER = "ragline"
MODEL = "ragline/extractive"
SEARCH_TOOL = "knowledge_search"
MAX_QUOTES = 3
PREFACE = (
    "Extractive answer (no generative model is configured, so these are the passages that best "
    "match your question, quoted verbatim):"
)
NOTHING_FOUND = (
    "No generative model is configured, and the knowledge base returned no passage that matches "
    "the question, so I cannot answer it."
)
NO_SEARCH = (
    "No generative model is configured, and this assistant has no knowledge base search, so I can "
    "only answer from retrieved passages."
)


def _latest_turn(messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The last user message and the tool results that came after it."""
    question = ""
    results: list[str] = []
    for message in messages:
        if message.get("role") == "user":
            question, results = str(message.get("content") or ""), []
        elif message.get("role") == "tool":
            results.append(str(message.get("content") or ""))
    return question, results


def _tool_names(optional_params: dict[str, Any]) -> set[str]:
    return {t.get("function", {}).get("name", "") for t in optional_params.get("tools") or ()}


def extractive_answer(question: str, tool_results: list[str]) -> str:
    """Pick the sentences of the retrieved passages with the highest keyword overlap."""
    query = keywords(question)
    scored: list[tuple[float, int, int, str]] = []
    for result in tool_results:
        for number, passage in parse_passages(result):
            for position, sentence in enumerate(sentences(passage)):
                score = overlap(query, sentence)
                if score > 0:
                    scored.append((score, -position, number, sentence))
    if not scored:
        return NOTHING_FOUND
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    seen: set[str] = set()
    lines = []
    for _score, _pos, number, sentence in scored:
        if sentence in seen:
            continue
        seen.add(sentence)
        lines.append(f'- "{sentence}" [{number}]')
        if len(lines) == MAX_QUOTES:
            break
    return PREFACE + "\n\n" + "\n".join(lines)


def _usage(messages: list[dict[str, Any]], output: str) -> dict[str, int]:
    prompt = sum(count_tokens(str(m.get("content") or "")) for m in messages)
    completion = count_tokens(output)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _text_chunks(text: str, usage: dict[str, int]) -> Iterator[dict[str, Any]]:
    words = text.split(" ")
    for i in range(0, len(words), 8):
        piece = " ".join(words[i : i + 8]) + (" " if i + 8 < len(words) else "")
        yield {"text": piece, "is_finished": False, "finish_reason": "", "usage": None, "index": 0}
    yield {"text": "", "is_finished": True, "finish_reason": "stop", "usage": usage, "index": 0}


def plan(messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``GenericStreamingChunk``s of one extractive model call."""
    question, results = _latest_turn(messages)
    if not results and SEARCH_TOOL in _tool_names(optional_params):
        arguments = json.dumps({"query": question})
        tool_use = {
            "id": "call_extractive_search",
            "type": "function",
            "function": {"name": SEARCH_TOOL, "arguments": arguments},
            "index": 0,
        }
        usage = _usage(messages, arguments)
        return [{"text": "", "tool_use": tool_use, "is_finished": True, "finish_reason": "tool_calls", "usage": usage}]
    answer = extractive_answer(question, results) if results else NO_SEARCH
    return list(_text_chunks(answer, _usage(messages, answer)))


def register_extractive_provider(litellm: Any) -> None:
    """Add the ``ragline`` provider to litellm's custom provider map (idempotent)."""

    class ExtractiveLLM(litellm.CustomLLM):  # type: ignore[misc]
        async def astreaming(
            self, model: str, messages: list[dict[str, Any]], *args: Any, optional_params: dict[str, Any], **kw: Any
        ) -> AsyncIterator[dict[str, Any]]:
            for chunk in plan(messages, optional_params):
                yield chunk

    if any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        return
    litellm.custom_provider_map = [
        *litellm.custom_provider_map,
        {"provider": PROVIDER, "custom_handler": ExtractiveLLM()},
    ]
    litellm.utils.custom_llm_setup()

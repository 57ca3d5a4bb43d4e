"""``ragline/extractive``: a built-in model so chat works with no provider configured.

A native ``ModelClient`` (no litellm round trip, no litellm import): with no search result yet it
asks for ``knowledge_search`` with the user's question; once the results are in the conversation it
answers with the best-matching sentences of those passages, quoted verbatim with their ``[n]``
markers, and says plainly that no generative model is set up. It drives the same tool loop as any model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence

from engine.agent.passages import parse_passages
from engine.agent.textmatch import keywords, overlap, sentences
from engine.llm import Finish, Message, ModelEvent, ModelRequest, TextDelta, ToolCall, ToolCallReady, UsageReport
from engine.tokens import count_tokens

PROVIDER = "ragline"
MODEL = "ragline/extractive"
SEARCH_TOOL = "knowledge_search"
SEARCH_CALL_ID = "call_extractive_search"
MAX_QUOTES = 3
WORDS_PER_DELTA = 8
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


def _latest_turn(messages: Sequence[Message]) -> tuple[str, list[str]]:
    """The last user message and the tool results that came after it."""
    question = ""
    results: list[str] = []
    for message in messages:
        if message.role == "user":
            question, results = message.content, []
        elif message.role == "tool":
            results.append(message.content)
    return question, results


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


def _usage(messages: Sequence[Message], output: str) -> UsageReport:
    return UsageReport(sum(count_tokens(m.content) for m in messages), count_tokens(output))


def _deltas(text: str) -> Iterator[TextDelta]:
    words = text.split(" ")
    for i in range(0, len(words), WORDS_PER_DELTA):
        yield TextDelta(" ".join(words[i : i + WORDS_PER_DELTA]) + (" " if i + WORDS_PER_DELTA < len(words) else ""))


def plan(request: ModelRequest) -> list[ModelEvent]:
    """The events of one extractive model call."""
    question, results = _latest_turn(request.messages)
    if not results and any(tool.name == SEARCH_TOOL for tool in request.tools):
        arguments = json.dumps({"query": question})
        call = ToolCall(id=SEARCH_CALL_ID, name=SEARCH_TOOL, arguments=arguments)
        return [ToolCallReady(call), _usage(request.messages, arguments), Finish("tool_calls")]
    answer = extractive_answer(question, results) if results else NO_SEARCH
    return [*_deltas(answer), _usage(request.messages, answer), Finish("stop")]


class ExtractiveModelClient:
    """``ModelClient`` for ``ragline/extractive``: quotes retrieved passages, needs no provider."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        for event in plan(request):
            yield event

"""The run's events in OpenAI's shapes: ``chat.completion`` (whole) and ``chat.completion.chunk`` (streamed), with
``ragline_run_id`` and ``ragline_citations``; a failed run as an ``OpenAIError``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from api.services.openai_compat import OpenAIError
from engine.events import CitationEvent, ContentEvent, DoneEvent, ErrorEvent, RunEvent, ThinkingEvent

_RUN_FAILURES: dict[str, int] = {"model_error": 502, "timeout": 504, "cancelled": 409}


def run_failure(event: ErrorEvent) -> OpenAIError:
    """A run that ended in ``error``: not worth an automatic retry (it is recorded, a retry is a new run)."""
    return OpenAIError(
        _RUN_FAILURES.get(event.code, 500), event.message, code=event.code, run_id=event.run_id,
        headers={"x-should-retry": "false"},
    )  # fmt: skip


def citation(event: CitationEvent) -> dict[str, Any]:
    return {"index": event.index, "file_id": event.file_id, "file_name": event.file_name, "page": event.page,
            "chunk_id": event.chunk_id, "quote": event.quote}  # fmt: skip


def usage(event: DoneEvent) -> dict[str, int]:
    tokens = event.token_usage
    return {"prompt_tokens": tokens.prompt, "completion_tokens": tokens.completion, "total_tokens": tokens.total}


class CompletionShape:
    """Builds ``chat.completion`` and ``chat.completion.chunk`` objects for one run."""

    def __init__(self, run_id: str, model: str) -> None:
        self.run_id = run_id
        self.model = model
        self.created = int(time.time())

    def _base(self, kind: str) -> dict[str, Any]:
        return {"id": f"chatcmpl-{self.run_id}", "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": None, "ragline_run_id": self.run_id}  # fmt: skip

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._base("chat.completion.chunk"), "choices": [choice]}

    def usage_chunk(self, done: DoneEvent) -> dict[str, Any]:
        return {**self._base("chat.completion.chunk"), "choices": [], "usage": usage(done)}

    def completion(self, done: DoneEvent, citations: list[dict[str, Any]]) -> dict[str, Any]:
        message = {"role": "assistant", "content": done.output, "refusal": None, "ragline_citations": citations}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        return {**self._base("chat.completion"), "choices": [choice], "usage": usage(done)}

    async def chunks(self, events: AsyncIterator[RunEvent | None], *, include_usage: bool) -> AsyncIterator[Any]:
        """The stream's objects: a role chunk, ``content`` deltas (``thinking`` as ``reasoning_content``), a final
        chunk with ``finish_reason`` and ``ragline_citations``, the usage chunk when asked; ``None`` (a keepalive)
        passes through; a failed run ends with ``{"error": …}``. The caller adds ``[DONE]`` after a success."""
        yield self.chunk({"role": "assistant", "content": ""})
        citations: list[dict[str, Any]] = []
        async for event in events:
            if event is None:
                yield None
            elif isinstance(event, ContentEvent):
                yield self.chunk({"content": event.content})
            elif isinstance(event, ThinkingEvent):
                yield self.chunk({"reasoning_content": event.content})
            elif isinstance(event, CitationEvent):
                citations.append(citation(event))
            elif isinstance(event, DoneEvent):
                yield self.chunk({"ragline_citations": citations}, "stop")
                if include_usage:
                    yield self.usage_chunk(event)
                return
            elif isinstance(event, ErrorEvent):
                yield run_failure(event).body()
                return

    async def collect(self, events: AsyncIterator[RunEvent]) -> dict[str, Any]:
        """The whole ``chat.completion`` once the run ends. Raises ``OpenAIError`` for a failed run."""
        citations: list[dict[str, Any]] = []
        async for event in events:
            if isinstance(event, CitationEvent):
                citations.append(citation(event))
            elif isinstance(event, DoneEvent):
                return self.completion(event, citations)
            elif isinstance(event, ErrorEvent):
                raise run_failure(event)
        raise OpenAIError(500, "the run ended without a result", code="internal", run_id=self.run_id)

"""The agent loop: stream a model call, run the tools it asks for, feed results back, repeat.

Every run yields ``execution`` first (then ``session`` for a chat run) and exactly one terminal event
last (``done`` or ``error`` with code ``model_error | max_steps | max_tokens | timeout | internal``).

``content`` is reserved for the final answer and ``thinking`` for what comes before tool calls. A round
without tools on offer cannot end in tool calls, so its text streams as ``content`` at once. In a round with
tools on offer, text is held only until it reads like an answer (a second sentence, a line break or 200
characters) or the round ends: a short preamble followed by tool calls ("Let me search for that.") becomes
``thinking``, and an answer is delayed by at most its first sentence. Cancellation is the
consumer's: cancelling the task that iterates this generator stops it at its current await, and
the consumer (``RunManager``) emits the ``cancelled`` terminal event with ``trace.last_seq + 1``.

No cancel scope spans a ``yield`` (anyio forbids that in async generators): the run deadline is
applied to each await separately.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import msgspec

from engine.agent.citations import SourceRegistry, extract_citations
from engine.agent.context import fit_messages, message_tokens
from engine.agent.passages import render_passages
from engine.agent.spec import KNOWLEDGE_SEARCH, AgentSpec, RunRequest
from engine.agent.tools import parse_arguments
from engine.agent.trace import RunTrace
from engine.errors import ModelError
from engine.events import (
    AnswerEvent,
    AnswerMetadata,
    AnswerSource,
    CitationEvent,
    ContentEvent,
    DoneEvent,
    ErrorEvent,
    ExecutionEvent,
    RunEvent,
    SessionEvent,
    ThinkingEvent,
    ToolEndEvent,
    ToolStartEvent,
)
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
from engine.ports import ModelClient, Tool, ToolContext, ToolResult
from engine.tokens import count_tokens
from engine.types import TokenUsage

log = logging.getLogger(__name__)

ANSWER_HOLD_CHARS = 200  # text held in a round with tools on offer, at most, before it counts as an answer
_SECOND_SENTENCE = re.compile(r"[.!?:;][\"')\]]*\s+\S")
TOOL_STATUS = {KNOWLEDGE_SEARCH: "Searching the knowledge base…"}

OUTPUT_RESERVE_TOKENS = 1024  # context kept free for the answer
CITATION_GUIDE = (
    "Answer from the passages returned by knowledge_search. Put the passage number in square "
    "brackets, like [1], right after each claim it supports. If the passages do not answer the "
    "question, say so."
)


class RunFailed(Exception):
    """Ends a run with an ``error`` event of ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def system_prompt(spec: AgentSpec, tool_names: Sequence[str]) -> str:
    parts = [spec.instructions.strip()] if spec.instructions.strip() else []
    if KNOWLEDGE_SEARCH in tool_names:
        parts.append(CITATION_GUIDE)
    return "\n\n".join(parts)


def reads_like_an_answer(text: str) -> bool:
    """Held text that is more than a one-sentence preamble to a tool call."""
    return len(text) >= ANSWER_HOLD_CHARS or "\n" in text.strip() or _SECOND_SENTENCE.search(text) is not None


class _StepResult:
    def __init__(self) -> None:
        self.text: list[str] = []
        self.held: list[str] = []  # text not yet streamed: a preamble (thinking) or the start of an answer
        self.streamed = False  # some of this round's text already went out as content
        self.calls: list[ToolCall] = []
        self.usage: UsageReport | None = None
        self.finish = "stop"


class AgentLoop:
    """One run's state; ``events()`` is the generator ``run_agent`` returns."""

    def __init__(
        self,
        request: RunRequest,
        *,
        tools: Sequence[Tool],
        model: ModelClient,
        run_id: str,
        ctx: ToolContext,
        trace: RunTrace,
    ) -> None:
        self.request, self.spec, self.model, self.run_id, self.ctx, self.trace = (
            request, request.spec, model, run_id, ctx, trace
        )  # fmt: skip
        self.tools = {t.name: t for t in tools}
        self.tool_specs = tuple(
            ToolSpec(name=t.name, description=t.description, parameters=t.parameters) for t in tools
        )
        system = system_prompt(self.spec, list(self.tools))
        self.messages: list[Message] = [Message(role="system", content=system)] if system else []
        self.messages += [m for m in request.history if m.role != "system"]
        self.messages.append(Message(role="user", content=request.user_input))
        self.sources = SourceRegistry()
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.deadline = self.started + self.spec.timeout_s

    # -- events -----------------------------------------------------------------------------
    def _next(self) -> dict[str, Any]:
        self.trace.last_seq += 1
        return {"run_id": self.run_id, "seq": self.trace.last_seq, "ts": time.time()}

    def _remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def events(self) -> AsyncIterator[RunEvent]:
        request = self.request
        yield ExecutionEvent(
            **self._next(), execution_id=self.run_id, agent=self.spec.name, model=self.spec.model,
            session_id=request.session_id, user_message_id=request.user_message_id,
        )  # fmt: skip
        if request.session_id is not None:
            yield SessionEvent(**self._next(), session_id=request.session_id)
        try:
            for step in range(1, self.spec.max_steps + 1):
                result = _StepResult()
                async for event in self._model_step(step, result):
                    yield event
                if result.calls and not self.tool_specs and result.streamed:
                    # tools were never offered, so the calls are the model's invention; the text it already
                    # streamed as content is the answer (what was streamed stays what is stored)
                    result.calls.clear()
                if not result.calls:
                    async for event in self._finish(result):
                        yield event
                    return
                if step == self.spec.max_steps:
                    raise RunFailed("max_steps", f"the model still asked for tools after {step} steps")
                async for event in self._tool_step(step, result.calls):
                    yield event
        except RunFailed as exc:
            yield ErrorEvent(**self._next(), code=exc.code, message=exc.message)
        except ModelError as exc:
            yield ErrorEvent(**self._next(), code="model_error", message=exc.message)
        except Exception:
            log.exception("agent run %s failed", self.run_id)
            yield ErrorEvent(**self._next(), code="internal", message="internal error")

    # -- model ------------------------------------------------------------------------------
    def _request(self) -> ModelRequest:
        reserve = self.spec.max_tokens or OUTPUT_RESERVE_TOKENS
        budget = max(256, self.spec.context_window - min(reserve, OUTPUT_RESERVE_TOKENS))
        max_tokens = None
        if self.spec.max_tokens is not None:
            max_tokens = self.spec.max_tokens - self.trace.usage.total
            if max_tokens <= 0:
                raise RunFailed("max_tokens", f"token budget of {self.spec.max_tokens} used up")
        return ModelRequest(
            model=self.spec.model,
            messages=tuple(fit_messages(self.messages, self.spec.model, budget)),
            tools=self.tool_specs,
            temperature=self.spec.temperature,
            max_tokens=max_tokens,
        )

    async def _model_events(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        iterator = self.model.stream(request).__aiter__()
        try:
            while True:
                with anyio.move_on_after(self._remaining()) as scope:
                    try:
                        event = await iterator.__anext__()
                    except StopAsyncIteration:
                        return
                if scope.cancelled_caught:
                    raise RunFailed("timeout", f"run exceeded its {self.spec.timeout_s:g} s time limit")
                yield event
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await aclose()

    async def _model_step(self, step: int, result: _StepResult) -> AsyncIterator[RunEvent]:
        request = self._request()
        t0 = time.perf_counter()
        hold = bool(request.tools)  # only a round with tools on offer can turn out to be a preamble
        async for event in self._model_events(request):
            if isinstance(event, TextDelta):
                result.text.append(event.text)
                if not hold or result.streamed:
                    result.streamed = True
                    yield ContentEvent(**self._next(), content=event.text)
                    continue
                result.held.append(event.text)
                if reads_like_an_answer("".join(result.held)):
                    result.streamed = True
                    yield ContentEvent(**self._next(), content="".join(result.held))
                    result.held.clear()
            elif isinstance(event, ReasoningDelta):
                yield ThinkingEvent(**self._next(), content=event.text)
            elif isinstance(event, ToolCallReady):
                result.calls.append(event.call)
            elif isinstance(event, UsageReport):
                result.usage = event
            elif isinstance(event, Finish):
                result.finish = event.reason
        if result.held:  # the round ended: a preamble to its tool calls, or a short answer
            held = "".join(result.held)
            result.held.clear()
            if result.calls:
                yield ThinkingEvent(**self._next(), content=held)
            else:
                yield ContentEvent(**self._next(), content=held)
        usage = self._usage(request, result)
        self.trace.usage = self.trace.usage + usage
        self.trace.add_model_step(
            step=step,
            messages=len(request.messages),
            output="".join(result.text),
            tool_calls=tuple(result.calls),
            usage=usage,
            finish_reason=result.finish,
            latency_ms=(time.perf_counter() - t0) * 1000,
        )
        self._check_tokens(result)

    def _usage(self, request: ModelRequest, result: _StepResult) -> TokenUsage:
        if result.usage is not None:
            prompt, completion = result.usage.prompt_tokens, result.usage.completion_tokens
        else:  # provider sent no usage: estimate with tiktoken so budgets still hold
            prompt = sum(message_tokens(m, request.model) for m in request.messages)
            completion = count_tokens("".join(result.text), request.model) + sum(
                count_tokens(c.arguments, request.model) for c in result.calls
            )
        return TokenUsage(prompt=prompt, completion=completion, total=prompt + completion)

    def _check_tokens(self, result: _StepResult) -> None:
        limit = self.spec.max_tokens
        if limit is not None and self.trace.usage.total > limit:
            raise RunFailed("max_tokens", f"run used {self.trace.usage.total} tokens, over its budget of {limit}")
        if result.finish == "length":
            raise RunFailed("max_tokens", "the model's output was cut at its token limit")

    # -- tools ------------------------------------------------------------------------------
    async def _tool_step(self, step: int, calls: list[ToolCall]) -> AsyncIterator[RunEvent]:
        self.messages.append(Message(role="assistant", content=self.trace.steps[-1]["output"], tool_calls=tuple(calls)))
        parsed = [parse_arguments(c.arguments) for c in calls]
        if not self.trace.steps[-1]["output"].strip():  # nothing said before the tools: say what happens now
            status = " ".join(dict.fromkeys(TOOL_STATUS.get(c.name, f"Running {c.name}…") for c in calls))
            yield ThinkingEvent(**self._next(), content=status)
        for call, args in zip(calls, parsed, strict=True):
            shown = args if isinstance(args, dict) else {"_invalid_json": call.arguments[:2000]}
            yield ToolStartEvent(**self._next(), id=call.id, name=call.name, arguments=shown)
        results: list[tuple[ToolResult, float]] = [(ToolResult(content="", summary=""), 0.0)] * len(calls)

        async def run_one(i: int) -> None:
            results[i] = await self._call_tool(calls[i], parsed[i])

        with anyio.move_on_after(self._remaining()) as scope:
            if len(calls) == 1:
                await run_one(0)
            else:
                async with anyio.create_task_group() as tg:
                    for i in range(len(calls)):
                        tg.start_soon(run_one, i)
        if scope.cancelled_caught:
            raise RunFailed("timeout", f"run exceeded its {self.spec.timeout_s:g} s time limit")
        for call, args, (result, latency_ms) in zip(calls, parsed, results, strict=True):
            content = self._with_run_numbers(result)
            self.trace.add_tool_step(
                step=step,
                call=call,
                arguments=args if isinstance(args, dict) else call.arguments,
                content=content,
                is_error=result.is_error,
                latency_ms=latency_ms,
            )
            self.messages.append(Message(role="tool", content=content, tool_call_id=call.id, name=call.name))
            yield ToolEndEvent(
                **self._next(), id=call.id, name=call.name, summary=result.summary, is_error=result.is_error
            )

    async def _call_tool(self, call: ToolCall, args: dict[str, Any] | str) -> tuple[ToolResult, float]:
        t0 = time.perf_counter()
        tool = self.tools.get(call.name)
        if isinstance(args, str):
            result = ToolResult(content=args, summary="invalid JSON arguments", is_error=True)
        elif tool is None:
            names = ", ".join(sorted(self.tools)) or "none"
            result = ToolResult(
                content=f"Unknown tool {call.name!r}. Available tools: {names}.", summary="unknown tool", is_error=True
            )
        else:
            try:
                result = await tool(args, self.ctx)
            except Exception as exc:  # a failing tool is the model's problem to handle, not a crash
                log.warning("tool %s failed in run %s: %s", call.name, self.run_id, exc, exc_info=True)
                result = ToolResult(content=f"Tool failed: {type(exc).__name__}", summary="tool failed", is_error=True)
        return result, (time.perf_counter() - t0) * 1000

    def _with_run_numbers(self, result: ToolResult) -> str:
        # Passages are shown under run-wide numbers so [n] stays unambiguous across searches.
        if not result.sources or result.is_error:
            return result.content
        numbers = [self.sources.number(hit) for hit in result.sources]
        return render_passages(result.sources, numbers)

    # -- end --------------------------------------------------------------------------------
    async def _finish(self, result: _StepResult) -> AsyncIterator[RunEvent]:
        output = "".join(result.text)
        self.trace.output = output
        sources: list[AnswerSource] = []
        for citation in extract_citations(output, self.sources):
            chunk = citation.hit.chunk
            source = AnswerSource(
                index=citation.index, chunk_id=chunk.id, kb_id=chunk.kb_id, file_id=chunk.file_id,
                file_name=chunk.file_name, page=chunk.page, quote=citation.quote,
            )  # fmt: skip
            sources.append(source)
            yield CitationEvent(**self._next(), **msgspec.structs.asdict(source))
        if self.request.session_id is not None:  # a chat run: the whole answer in one frame, then done
            metadata = AnswerMetadata(
                execution_id=self.run_id, session_id=self.request.session_id, model=self.spec.model,
                token_usage=self.trace.usage,
            )  # fmt: skip
            yield AnswerEvent(**self._next(), content=output, sources=tuple(sources), metadata=metadata)
        elapsed = time.monotonic() - self.started
        yield DoneEvent(**self._next(), output=output, token_usage=self.trace.usage, time=round(elapsed, 6))


def run_agent(
    request: RunRequest,
    *,
    tools: Sequence[Tool],
    model: ModelClient,
    run_id: str,
    ctx: ToolContext,
    trace: RunTrace,
) -> AsyncIterator[RunEvent]:
    """Run one agent turn and stream its events (``seq`` from 1, one terminal event).

    Args:
        request: The agent, the conversation so far (system messages are replaced by the spec's), the new
            user message, and the labels echoed in the events (session, user message).
        tools: The tools this run may call (already filtered to ``spec.tools``).
        model: The model client.
        run_id: Stamped on every event.
        ctx: Passed to every tool (workspace and knowledge-base scope).
        trace: Filled with model and tool steps, usage and output as the run goes.
    """
    return AgentLoop(request, tools=tools, model=model, run_id=run_id, ctx=ctx, trace=trace).events()

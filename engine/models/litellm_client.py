"""``ModelClient`` over litellm: one streamed chat completion as typed ``ModelEvent``s.

Credentials come from configuration only (constructor arguments); nothing in a ``ModelRequest``
can set ``api_base`` or ``api_key`` (CVE-2024-6587: a client-chosen ``api_base`` leaks the key).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from engine.errors import ModelError
from engine.llm import (
    Finish,
    Message,
    ModelEndpoint,
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallReady,
    UsageReport,
)

_configured = False


def configure_litellm() -> Any:
    """Import litellm once with quiet, offline settings (blocking: the import takes about 2 s)."""
    global _configured
    import litellm

    if not _configured:
        litellm.suppress_debug_info = True
        litellm.disable_hf_tokenizer_download = True
        # at DEBUG these SDKs log whole requests: prompts with resolved variables, sometimes headers
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "openai", "httpx", "httpcore"):
            logging.getLogger(name).setLevel(max(logging.getLogger(name).level, logging.WARNING))
        _configured = True
    return litellm


_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\"]+"),
    re.compile(r"(?i)((?:api[_-]?)?key=)[^&\s'\"]+"),
    re.compile(r"(?i)(['\"]?(?:api[_-]?key|authorization|x-api-key)['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
    re.compile(r"\b(sk-)[A-Za-z0-9_\-]{6,}"),
)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove API keys from a provider error message (``key=``, ``Bearer``, known secrets)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1[redacted]", text)
    return text[:500]


def message_to_dict(message: Message) -> dict[str, Any]:
    """An engine ``Message`` in OpenAI chat format."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
        out["content"] = message.content or None
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _Assembler:
    """Turns litellm stream chunks into ``ModelEvent``s; tool-call fragments are joined by index."""

    def __init__(self) -> None:
        self.calls: dict[int, _ToolCallParts] = {}
        self.finish: str | None = None
        self.usage: UsageReport | None = None
        self.produced = False  # any text, reasoning or tool-call fragment

    def answered(self, response: Any) -> bool:
        """Whether the provider gave a choice: output, or at least a finish reason of its own.

        A chunk with ``choices: []`` (the usage-only chunk that ends a normal stream, or a proxy's
        empty answer) is no choice. litellm's stream wrapper always ends with a ``finish_reason`` chunk
        of its own ("stop" when the provider sent none), so a finish reason counts only when the
        wrapper says it came from the provider.
        """
        if self.produced:
            return True
        if hasattr(response, "received_finish_reason"):
            return bool(response.received_finish_reason or getattr(response, "intermittent_finish_reason", None))
        return self.finish is not None

    def feed(self, chunk: Any) -> list[ModelEvent]:
        events: list[ModelEvent] = []
        usage = getattr(chunk, "usage", None)
        if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
            self.usage = UsageReport(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))
        for choice in getattr(chunk, "choices", None) or ():
            delta = choice.delta
            reasoning = getattr(delta, "reasoning_content", None)
            if reasoning:
                events.append(ReasoningDelta(reasoning))
            if delta.content:
                events.append(TextDelta(delta.content))
            for tc in getattr(delta, "tool_calls", None) or ():
                self._add_call_delta(tc)
                self.produced = True
            if choice.finish_reason:
                self.finish = choice.finish_reason
        if events:
            self.produced = True
        return events

    def _add_call_delta(self, tc: Any) -> None:
        index = tc.index if tc.index is not None else len(self.calls)
        parts = self.calls.setdefault(index, _ToolCallParts())
        if tc.id:
            parts.id = tc.id
        function = tc.function
        if function is not None:
            if function.name and not parts.name:
                parts.name = function.name
            if function.arguments:
                parts.arguments.append(function.arguments)

    def tail(self) -> list[ModelEvent]:
        events: list[ModelEvent] = []
        for index in sorted(self.calls):
            parts = self.calls[index]
            call_id = parts.id or f"call_{index}"
            events.append(ToolCallReady(ToolCall(id=call_id, name=parts.name, arguments="".join(parts.arguments))))
        if self.usage is not None:
            events.append(self.usage)
        events.append(Finish(self.finish or ("tool_calls" if self.calls else "stop")))
        return events


class LiteLLMModelClient:
    """Streams chat completions through ``litellm.acompletion``.

    Args:
        api_base: Provider base URL from configuration (``None``: the provider's default).
        api_key: Provider key from configuration; never taken from a request, never in errors.
        timeout_s: Per-call HTTP timeout.
        extra: Extra keyword arguments for ``acompletion`` (operator configuration).
        stall_timeout_s: A stream that sends no chunk for this long fails with ``ModelError``.
        max_retries: Retries of a failed call before any chunk arrived (provider 5xx, 429, resets).
    """

    def __init__(
        self,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60,
        extra: dict[str, Any] | None = None,
        stall_timeout_s: float = 30,
        max_retries: int = 1,
    ) -> None:
        self._max_retries = max_retries
        self._api_base = api_base
        self._api_key = api_key
        self._secrets: tuple[str, ...] = ()  # every credential to scrub from error text (set by for_endpoint)
        self._timeout_s = timeout_s
        self._extra = dict(extra or {})
        self._stall_timeout_s = stall_timeout_s
        self._litellm: Any = None  # imported on first use, off the event loop

    @classmethod
    def for_endpoint(cls, endpoint: ModelEndpoint) -> LiteLLMModelClient:
        """A client for one model configuration: its endpoint, credentials and default parameters."""
        defaults = ("temperature", "max_tokens", "top_p")
        extra: dict[str, Any] = {k: v for k, v in endpoint.params.items() if k in defaults}
        if endpoint.client_key:  # e.g. Azure AD client credentials
            extra["client_id"] = endpoint.client_key
        if endpoint.client_secret:
            extra["client_secret"] = endpoint.client_secret
        client = cls(
            api_base=endpoint.api_base, api_key=endpoint.api_key, extra=extra,
            timeout_s=float(endpoint.params.get("timeout_s", 60)),
        )  # fmt: skip
        client._secrets = endpoint.secrets
        return client

    def warm_up(self) -> None:
        """Import litellm and what its first completion imports (blocking, ~3 s), so the first run does not pay."""
        self._litellm = configure_litellm()
        import importlib

        for module in (
            "openai.resources.chat", "litellm.responses.mcp.chat_completions_handler",
            "litellm.responses.mcp.litellm_proxy_mcp_handler", "litellm.proxy.openai_files_endpoints.common_utils",
        ):  # fmt: skip
            with contextlib.suppress(ImportError):  # a later litellm may move them: warming is best effort
                importlib.import_module(module)
        import openai

        openai.OpenAI(api_key="warm-up", base_url="http://127.0.0.1:9/").chat.completions  # noqa: B018 (no request)

    def _kwargs(self, request: ModelRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            **self._extra,
            "model": request.model,
            "messages": [message_to_dict(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "timeout": self._timeout_s,
            "max_retries": self._max_retries,
        }
        if self._api_base:
            kwargs["api_base"] = self._api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        if request.tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ]
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        return kwargs

    def _error(self, exc: BaseException) -> ModelError:
        kind = type(exc).__name__
        secrets = self._secrets or ((self._api_key,) if self._api_key else ())
        return ModelError(f"model call failed ({kind}): {redact(str(exc), secrets)}")

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream one model call.

        Raises ``ModelError`` on provider errors, timeouts, stalls, and on a response without any
        choice (no text, no tool call, no finish reason: e.g. only ``choices: []`` chunks), which
        would otherwise end the run as a successful empty answer.
        """
        assembler = _Assembler()
        if self._litellm is None:
            self._litellm = await anyio.to_thread.run_sync(configure_litellm)
        try:
            with anyio.fail_after(self._timeout_s):
                response = await self._litellm.acompletion(**self._kwargs(request))
        except TimeoutError as exc:
            raise ModelError(f"model call timed out after {self._timeout_s:g} s") from exc
        except Exception as exc:
            raise self._error(exc) from None
        iterator = response.__aiter__()
        try:
            while True:
                try:
                    with anyio.fail_after(self._stall_timeout_s):
                        chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    raise ModelError(f"model stream stalled: no data for {self._stall_timeout_s:g} s") from exc
                except Exception as exc:
                    raise self._error(exc) from None
                for event in assembler.feed(chunk):
                    yield event
        finally:
            await _close_quietly(iterator)
        if not assembler.answered(response):
            raise ModelError(
                "the model returned no answer (no choices): its response held no text, tool call or finish reason"
            )
        for event in assembler.tail():
            yield event


async def _close_quietly(iterator: Any) -> None:
    # Releases the HTTP connection of an abandoned stream; litellm's wrapper may lack aclose.
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    # closing a broken stream must not mask the real error
    with anyio.CancelScope(shield=True), anyio.move_on_after(2), contextlib.suppress(Exception):
        await aclose()


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """What litellm's bundled price map says a call cost (``None``: a model it has no price for)."""
    if model.startswith("ragline/"):
        return 0.0
    litellm = configure_litellm()
    try:
        prompt, completion = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # litellm raises for models it does not know
        return None
    return float(prompt) + float(completion)

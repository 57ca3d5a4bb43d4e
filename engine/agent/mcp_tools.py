"""Tools from MCP servers (streamable HTTP): the allowed tools of an agent's servers, offered as its own.

The one module that speaks MCP as a client (the ``mcp`` SDK and its ``httpx2``). ``load_mcp_tools`` connects to
every server of a run at its start, side by side (each within ``DISCOVERY_TIMEOUT_S`` or the server's timeout,
whichever is shorter), lists its tools and keeps those on the server's allow-list, named ``<server>__<tool>``.
A server that cannot be reached or refuses adds no tools and a note saying why: the run still starts.

Each call opens its own session (initialize, ``tools/call``, close; calls of one round may run side by side)
within the server's per-call timeout. Whatever goes wrong (timeout, HTTP or protocol error, the tool's own error,
a blocked destination) goes back to the model as a tool error, never up the stack, and results are cut at
``MAX_RESULT_CHARS``. Every HTTP request (redirects included) is checked by the SSRF guard (``engine.net``) and
sent to the checked address, so DNS is not asked twice; Host and TLS SNI keep the name. Environment proxies are
ignored, and the SDK's and httpx2's loggers stay at WARNING (at DEBUG they log requests, headers included).
The SDK is imported on first use, in a worker thread: importing it costs ~0.8 s, which every server and CLI start
would pay otherwise, and which the event loop would stand still for if it imported it itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import msgspec

from engine.errors import BlockedDestination
from engine.llm import ModelEvent, ModelRequest, ReasoningDelta
from engine.net import IPNetwork, Target, resolve_url_async
from engine.ports import ModelClient, Tool, ToolContext, ToolResult

if TYPE_CHECKING:
    import mcp_types
    from mcp.client.session import ClientSession

log = logging.getLogger(__name__)
for _name in ("mcp", "httpx2", "httpcore2"):
    logging.getLogger(_name).setLevel(max(logging.getLogger(_name).level, logging.WARNING))

DISCOVERY_TIMEOUT_S = 10.0  # listing a server's tools at run start, at most (or its per-call timeout if shorter)
MAX_RESULT_CHARS = 16_000  # of one tool result handed to the model
MAX_LIST_PAGES = 20  # tools/list pages read from one server
SEPARATOR = "__"
_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")
_MAX_NAME = 64  # OpenAI's limit for function names


class McpServerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One MCP server as a run uses it: its URL, the headers it is sent (credentials opened) and its limits."""

    id: str
    name: str  # the namespace of its tools
    url: str
    headers: dict[str, str] = {}
    allowed_tools: tuple[str, ...] = ()  # the only tools ever offered (by the server's own names)
    timeout_s: float = 30.0  # per call


class McpToolset(msgspec.Struct, frozen=True, kw_only=True):
    """What a run is offered: the tools, and a note for each server that contributed none (why)."""

    tools: tuple[Tool, ...] = ()
    notes: tuple[str, ...] = ()


def tool_name(server: str, tool: str) -> str:
    """``<server>__<tool>`` as a model may call it (letters, digits, ``_`` and ``-``; at most 64 characters)."""
    name = _TOOL_NAME.sub("_", f"{server}{SEPARATOR}{tool}")
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _MAX_NAME - 9]}_{digest}"


# -- transport ------------------------------------------------------------------------------------------------


class GuardedTransport(httpx2.AsyncBaseTransport):
    """Every request checked by the SSRF guard and sent to the checked address (the name stays in Host and SNI).

    An origin is resolved once per transport (one session): its requests all go to the address checked first.
    """

    def __init__(self, allowed: Sequence[IPNetwork], inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self._allowed = tuple(allowed)
        self._inner = inner or httpx2.AsyncHTTPTransport(trust_env=False)
        self._checked: dict[tuple[str, str, int | None], Target] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        origin = (request.url.scheme, request.url.host, request.url.port)
        target = self._checked.get(origin)
        if target is None:
            target = self._checked[origin] = await resolve_url_async(str(request.url), allowed=self._allowed)
        request.url = request.url.copy_with(host=target.addresses[0].split("%", 1)[0])
        if target.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": target.host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _import_sdk() -> None:
    for module in ("mcp_types", "mcp.shared.exceptions", "mcp.client.session", "mcp.client.streamable_http"):
        importlib.import_module(module)


@contextlib.asynccontextmanager
async def _session(config: McpServerConfig, allowed: Sequence[IPNetwork]) -> AsyncIterator[ClientSession]:
    """An initialized session with the server (closed, with its HTTP client, on leaving)."""
    if "mcp.client.streamable_http" not in sys.modules:
        await anyio.to_thread.run_sync(_import_sdk)
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    client = httpx2.AsyncClient(
        headers=dict(config.headers), timeout=httpx2.Timeout(config.timeout_s), transport=GuardedTransport(allowed),
        trust_env=False, follow_redirects=False,
    )  # fmt: skip
    async with (
        client,
        streamable_http_client(config.url, http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def describe_failure(exc: BaseException) -> str:
    """A short reason for people and models (never headers or credentials: messages only)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, BlockedDestination):
        return f"blocked: {exc.message}"
    from mcp.shared.exceptions import MCPError

    if isinstance(exc, MCPError):
        return f"MCP error {exc.code}: {exc.message}"[:300]
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


# -- tools ----------------------------------------------------------------------------------------------------


def _schema(remote: mcp_types.Tool) -> dict[str, Any]:
    schema = dict(remote.input_schema or {})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def result_text(result: mcp_types.CallToolResult) -> str:
    """The result as text: text blocks as written, other blocks named, structured content as JSON if alone."""
    import mcp_types

    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, mcp_types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[binary resource {resource.uri}]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource {block.uri}]")
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            parts.append(f"[{block.type} {block.mime_type}, not shown]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts)


class McpTool:
    """One allowed tool of an MCP server as a ``Tool``: each call is a session of its own, within the timeout."""

    def __init__(
        self, config: McpServerConfig, remote: mcp_types.Tool, *, name: str, allowed: Sequence[IPNetwork] = ()
    ) -> None:
        self.config = config
        self.remote_name = remote.name
        self.name = name
        self.description = f"[MCP server {config.name}] {remote.description or remote.title or remote.name}"[:2000]
        self.parameters: dict[str, Any] = _schema(remote)
        self._allowed = tuple(allowed)

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        import mcp_types

        timeout = self.config.timeout_s
        try:
            with anyio.fail_after(timeout):
                async with _session(self.config, self._allowed) as session:
                    result = await session.call_tool(self.remote_name, args)
        except Exception as exc:  # a failing server is the model's problem to handle, never the run's end
            reason = f"timed out after {timeout:g} s" if isinstance(exc, TimeoutError) else describe_failure(exc)
            log.warning("MCP tool %s (server %s) failed in run %s: %s", self.remote_name, self.config.name,
                        ctx.run_id, reason)  # fmt: skip
            return ToolResult(content=f"The MCP tool {self.name} failed: {reason}.", summary=reason[:120],
                              is_error=True)  # fmt: skip
        if not isinstance(result, mcp_types.CallToolResult):  # pragma: no cover - only with allow_* flags
            return ToolResult(content="The MCP tool answered with an unexpected result.", summary="unexpected result",
                              is_error=True)  # fmt: skip
        text = result_text(result)
        cut = len(text) > MAX_RESULT_CHARS
        content = text[:MAX_RESULT_CHARS] + ("\n[truncated]" if cut else "")
        summary = text if len(text) <= 120 else text[:117] + "..."
        return ToolResult(content=content, summary=summary + (" (truncated)" if cut else ""),
                          is_error=bool(result.is_error))  # fmt: skip


async def list_tools(config: McpServerConfig, allowed: Sequence[IPNetwork] = ()) -> list[mcp_types.Tool]:
    """Every tool the server lists (all pages), within ``DISCOVERY_TIMEOUT_S`` or its timeout if shorter."""
    import mcp_types

    tools: list[mcp_types.Tool] = []
    with anyio.fail_after(min(config.timeout_s, DISCOVERY_TIMEOUT_S)):
        async with _session(config, allowed) as session:
            cursor: str | None = None
            for _page in range(MAX_LIST_PAGES):
                params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                listed = await session.list_tools(params=params)
                tools += listed.tools
                cursor = listed.next_cursor
                if not cursor:
                    break
    return tools


async def load_mcp_tools(
    configs: Sequence[McpServerConfig], *, allowed: Sequence[IPNetwork] = (), taken: Sequence[str] = ()
) -> McpToolset:
    """The allowed tools of every server (listed side by side); a server that fails adds a note instead.

    ``taken``: names already offered (built-in tools); an MCP tool never shadows one, nor an earlier MCP tool.
    """
    found: dict[str, list[mcp_types.Tool] | str] = {}

    async def discover(config: McpServerConfig) -> None:
        try:
            found[config.id] = await list_tools(config, allowed)
        except Exception as exc:
            found[config.id] = describe_failure(exc)

    async with anyio.create_task_group() as group:
        for config in configs:
            if config.allowed_tools:  # nothing may be offered: no need to connect
                group.start_soon(discover, config)
    names = set(taken)
    tools: list[Tool] = []
    notes: list[str] = []
    for config in configs:
        listed = found.get(config.id, [])
        if isinstance(listed, str):
            notes.append(
                f"MCP server {config.name!r} is unavailable ({listed}): its tools are not offered in this run."
            )
            log.warning("MCP server %s (%s) unavailable at run start: %s", config.name, config.id, listed)
            continue
        permitted = set(config.allowed_tools)
        for remote in listed:
            name = tool_name(config.name, remote.name)
            if remote.name in permitted and name not in names:
                names.add(name)
                tools.append(McpTool(config, remote, name=name, allowed=allowed))
        missing = sorted(permitted - {t.name for t in listed})
        if missing:
            log.info("MCP server %s does not list allowed tools %s", config.name, ", ".join(missing))
    return McpToolset(tools=tuple(tools), notes=tuple(notes))


class NotedModel:
    """A model client whose first stream opens with ``note`` as reasoning: the run's first ``thinking`` event."""

    def __init__(self, model: ModelClient, note: str) -> None:
        self.model = model
        self.note = note
        self._said = False

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        if not self._said:
            self._said = True
            yield ReasoningDelta(text=self.note)
        async for event in self.model.stream(request):
            yield event


def with_notes(model: ModelClient, notes: Sequence[str]) -> ModelClient:
    """``model``, saying ``notes`` first (as ``thinking``) when there are any."""
    return NotedModel(model, " ".join(notes)) if notes else model


def headers_for(token: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers a server is sent: its own, then ``Authorization: Bearer <token>`` when it has a token."""
    out = dict(headers or {})
    if token:
        out = {k: v for k, v in out.items() if k.lower() != "authorization"}
        out["Authorization"] = f"Bearer {token}"
    return out

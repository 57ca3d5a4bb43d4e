"""``engine.agent.mcp_tools``: MCP servers' tools as an agent's own, against a real MCP server on loopback.

The server (the ``mcp`` SDK's ``MCPServer``, streamable HTTP) listens on 127.0.0.2, the only network allowed
(the operator allow-list); nothing may reach 127.0.0.1. Checked: only allowed tools are offered, under
``<server>__<tool>``; results come back as text (cut at a bound), tool errors and failures as tool errors;
without the allow-list the server is never contacted (a note says why); a name that rebinds to 127.0.0.1 after
the first lookup is still reached at the checked address, with its name in Host and SNI.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import mcp_types
import pytest
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from engine.agent.mcp_tools import (
    MAX_RESULT_CHARS,
    GuardedTransport,
    McpServerConfig,
    NotedModel,
    load_mcp_tools,
    result_text,
    tool_name,
)
from engine.llm import Finish, ModelRequest, ReasoningDelta, TextDelta
from engine.net import allowed_networks
from engine.ports import ToolContext
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.anyio
CTX = ToolContext(run_id="run_1", workspace_id="ws_a")
ADDRESS = "127.0.0.2"
ALLOWED = allowed_networks([f"{ADDRESS}/32"])
REBIND_NAME = "mcp.rebind.test"


class LocalServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.hosts: list[str] = []  # the Host header of every tool call

    @property
    def url(self) -> str:
        return f"http://{ADDRESS}:{self.port}/mcp"


def build(state: LocalServer) -> MCPServer:
    server: MCPServer = MCPServer("local")

    @server.tool()
    def echo(text: str, ctx: Context) -> str:
        """Say it back."""
        state.hosts.append(ctx.request_context.request.headers.get("host", ""))
        return text

    @server.tool()
    def big() -> str:
        """A lot of text."""
        return "x" * (MAX_RESULT_CHARS + 500)

    @server.tool()
    def fails() -> str:
        """Always fails."""
        raise ValueError("the tool broke")

    @server.tool()
    async def slow() -> str:
        """Slow."""
        await anyio.sleep(5)
        return "late"

    @server.tool()
    def hidden() -> str:
        """Not allowed."""
        return "hidden"

    return server


@pytest.fixture(scope="module")
def local() -> Iterator[LocalServer]:
    state = LocalServer(free_port())
    app = build(state).streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    server = uvicorn.Server(uvicorn.Config(app, host=ADDRESS, port=state.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the MCP server did not start"
        time.sleep(0.05)
    yield state
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config(url: str, **kwargs: Any) -> McpServerConfig:
    fields: dict[str, Any] = {
        "id": "mcp_1",
        "name": "local",
        "url": url,
        "allowed_tools": ("echo", "big", "fails", "slow"),
        "timeout_s": 5.0,
        **kwargs,
    }
    return McpServerConfig(**fields)


def test_tool_names_are_namespaced_and_fit_the_model_limit() -> None:
    assert tool_name("local", "echo") == "local__echo"
    assert tool_name("local", "files.read/all") == "local__files_read_all"
    long_a, long_b = tool_name("s" * 32, "a" * 60), tool_name("s" * 32, "a" * 59 + "b")
    assert len(long_a) == len(long_b) == 64 and long_a != long_b


def test_results_read_as_text() -> None:
    result = mcp_types.CallToolResult(content=[
        mcp_types.TextContent(type="text", text="first"),
        mcp_types.ImageContent(type="image", data="AA==", mime_type="image/png"),
    ])  # fmt: skip
    assert result_text(result) == "first\n[image image/png, not shown]"
    only_structured = mcp_types.CallToolResult(content=[], structured_content={"temp": 21})
    assert result_text(only_structured) == '{"temp": 21}'


async def test_only_allowed_tools_are_offered_and_they_answer(local: LocalServer) -> None:
    toolset = await load_mcp_tools([config(local.url)], allowed=ALLOWED, taken=["local__big"])
    tools = {tool.name: tool for tool in toolset.tools}
    assert set(tools) == {"local__echo", "local__fails", "local__slow"}  # hidden: not allowed; big: name taken
    assert toolset.notes == ()
    assert tools["local__echo"].parameters["required"] == ["text"]
    assert "Say it back." in tools["local__echo"].description
    echoed = await tools["local__echo"]({"text": "hello"}, CTX)
    assert echoed.content == "hello" and not echoed.is_error
    failed = await tools["local__fails"]({}, CTX)
    assert failed.is_error and "Error executing tool fails" in failed.content  # the server keeps crashes' text


async def test_results_are_cut_and_slow_calls_time_out(local: LocalServer) -> None:
    toolset = await load_mcp_tools([config(local.url, timeout_s=1.0)], allowed=ALLOWED)
    tools = {tool.name: tool for tool in toolset.tools}
    big = await tools["local__big"]({}, CTX)
    assert big.content.endswith("\n[truncated]") and len(big.content) == MAX_RESULT_CHARS + len("\n[truncated]")
    t0 = time.monotonic()
    slow = await tools["local__slow"]({}, CTX)
    assert slow.is_error and "timed out after 1 s" in slow.content and time.monotonic() - t0 < 3


async def test_without_the_allow_list_the_server_is_never_contacted(local: LocalServer) -> None:
    before = len(local.hosts)
    toolset = await load_mcp_tools([config(local.url)], allowed=())
    assert toolset.tools == ()
    (note,) = toolset.notes
    assert "MCP server 'local' is unavailable (blocked:" in note and "loopback" in note
    assert len(local.hosts) == before


async def test_an_unreachable_server_adds_a_note_not_an_error() -> None:
    toolset = await load_mcp_tools([config(f"http://{ADDRESS}:{free_port()}/mcp")], allowed=ALLOWED)
    assert toolset.tools == () and "unavailable" in toolset.notes[0]
    assert (
        await load_mcp_tools([config("http://127.0.0.2:1/mcp", allowed_tools=())], allowed=ALLOWED) == type(toolset)()
    )  # nothing allowed: not even contacted


async def test_a_rebinding_name_is_reached_at_the_checked_address_or_not_at_all(
    local: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first two lookups answer the allowed address, every later one 127.0.0.1. A session resolves the name
    once: all its requests go to the address checked then (the name in Host); a session whose lookup rebinds to
    127.0.0.1 is refused before it connects."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == REBIND_NAME:
            lookups.append(host)
            address = ADDRESS if len(lookups) <= 2 else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, local.port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://{REBIND_NAME}:{local.port}/mcp"
    toolset = await load_mcp_tools([config(url)], allowed=ALLOWED)  # initialize, list, close: one lookup
    assert len(lookups) == 1
    echo = next(tool for tool in toolset.tools if tool.name == "local__echo")
    calls = len(local.hosts)
    result = await echo({"text": "pinned"}, CTX)
    assert result.content == "pinned", result.content
    assert local.hosts[-1] == f"{REBIND_NAME}:{local.port}" and len(lookups) == 2
    refused = await echo({"text": "rebound"}, CTX)
    assert refused.is_error and "blocked" in refused.content and "loopback" in refused.content
    assert len(local.hosts) == calls + 1


async def test_the_transport_sends_tls_name_and_host_for_the_checked_address() -> None:
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, text="ok")

    transport = GuardedTransport(ALLOWED, inner=httpx2.MockTransport(answer))
    async with httpx2.AsyncClient(transport=transport) as client:
        await client.get(f"https://{ADDRESS}:8443/mcp")
    (request,) = seen
    assert request.url.host == ADDRESS and request.headers["host"] == f"{ADDRESS}:8443"
    assert request.extensions["sni_hostname"] == ADDRESS


async def test_a_note_opens_the_first_model_stream_only() -> None:
    class Model:
        async def stream(self, request: ModelRequest) -> Any:
            yield TextDelta(text="hi")
            yield Finish(reason="stop")

    noted = NotedModel(Model(), "server x is unavailable")
    request = ModelRequest(model="m", messages=())
    first = [event async for event in noted.stream(request)]
    second = [event async for event in noted.stream(request)]
    assert first[0] == ReasoningDelta(text="server x is unavailable") and first[1:] == second

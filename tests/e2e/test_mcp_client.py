"""Agents use tools from MCP servers their workspace configures, against a real ``ragline serve``.

A small MCP server (the ``mcp`` SDK's ``MCPServer``, streamable HTTP, stateful sessions and SSE answers: the SDK's
defaults) runs in this process on 127.0.0.1 with ``weather(city)``, ``slow(seconds)`` and ``secret_tool()``. It is
configured through ``/api/v1/mcp-servers`` (``RAGLINE_MCP_ALLOW_NETWORKS=127.0.0.1/32`` on the server under test)
with ``weather`` and ``slow`` allowed; a scripted OpenAI-compatible model asks for ``localweather__weather`` and
answers with its result. Checked: the call reaches the MCP server with the configured token and the answer uses it;
a tool off the allow-list is never offered (nor run when a model names it anyway); a slow tool hits the timeout and
the run goes on; a server that cannot be reached leaves a note and the run starts without its tools; a URL outside
the allow-list is refused when saved.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from mcp.server.mcpserver import Context, MCPServer

from tests.e2e.conftest import LiveServer, free_port, start_server, stop_server
from tests.helpers.openai_server import Call, Reply, Server, serve

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MCP_TOKEN = "weather-token-5b0e7c1d"
WEATHER = "Sunny and 21 degrees in {city}"


@dataclass
class LocalMcp:
    url: str
    calls: list[str] = field(default_factory=list)  # tool names, as they ran
    authorization: list[str | None] = field(default_factory=list)  # the Authorization header of each call


def local_mcp_server(state: LocalMcp) -> MCPServer:
    server: MCPServer = MCPServer("localweather")

    def record(name: str, ctx: Context) -> None:
        state.calls.append(name)
        state.authorization.append(ctx.request_context.request.headers.get("authorization"))

    @server.tool()
    def weather(city: str, ctx: Context) -> str:
        """The weather in a city, now."""
        record("weather", ctx)
        return WEATHER.format(city=city)

    @server.tool()
    async def slow(seconds: float, ctx: Context) -> str:
        """Takes its time."""
        record("slow", ctx)
        await anyio.sleep(seconds)
        return "finally done"

    @server.tool()
    def secret_tool(ctx: Context) -> str:
        """Not for agents."""
        record("secret_tool", ctx)
        return "the secret"

    return server


@pytest.fixture(scope="module")
def local_mcp() -> Iterator[LocalMcp]:
    port = free_port()
    state = LocalMcp(url=f"http://127.0.0.1:{port}/mcp")
    app = local_mcp_server(state).streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the local MCP server did not start"
        time.sleep(0.05)
    yield state
    server.should_exit = True
    thread.join(10)


def model_reply(request: dict[str, Any]) -> Reply:
    """Ask for the tool the question names; once a tool answered, answer with what it said."""
    messages = request.get("messages", [])
    tool_results = [m for m in messages if m.get("role") == "tool"]
    if tool_results:
        return Reply(text=f"The tool said: {tool_results[-1]['content']}")
    question = str(next(m["content"] for m in reversed(messages) if m.get("role") == "user"))
    if "slow" in question:
        return Reply(calls=(Call("call_slow", "localweather__slow", '{"seconds": 6}'),))
    if "secret" in question:
        return Reply(calls=(Call("call_secret", "localweather__secret_tool", "{}"),))
    return Reply(text="Let me check.", calls=(Call("call_weather", "localweather__weather", '{"city": "Oslo"}'),))


@dataclass
class World:
    ragline: LiveServer
    model: Server
    mcp: LocalMcp

    def api(self) -> httpx.Client:
        return self.ragline.client()

    def run(self, agent_id: str, question: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Run the agent to its end: the run as recorded and its events."""
        with self.api() as api:
            started = api.post(f"/api/v1/agents/{agent_id}/run", json={"input": question})
            assert started.status_code == 202, started.text
            run_id = started.json()["data"]["run_id"]
            with api.stream("GET", f"/api/v1/executions/{run_id}/stream", timeout=60) as stream:
                for _ in stream.iter_lines():  # to the end of the run
                    pass
            run = api.get(f"/api/v1/executions/{run_id}").json()["data"]
            events = api.get(f"/api/v1/executions/{run_id}/events").json()["data"]
        return run, events

    def requests_about(self, question: str) -> list[dict[str, Any]]:
        return [r for r in self.model.requests if any(question == m.get("content") for m in r.get("messages", []))]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, local_mcp: LocalMcp) -> Iterator[World]:
    model_server = serve(by_request=model_reply)
    model = next(model_server)
    ragline = start_server(tmp_path_factory.mktemp("mcp") / "data", {
        "RAGLINE_MODEL_API_BASE": model.base_url, "RAGLINE_MODEL_API_KEY": "sk-mcp", "RAGLINE_LOG_LEVEL": "INFO",
        "RAGLINE_MCP_ALLOW_NETWORKS": "127.0.0.1/32",
    })  # fmt: skip
    try:
        yield World(ragline, model, local_mcp)
    finally:
        stop_server(ragline)
        model_server.close()


def add_server(world: World, **body: Any) -> dict[str, Any]:
    with world.api() as api:
        created = api.post("/api/v1/mcp-servers", json=body)
    assert created.status_code == 201, created.text
    return dict(created.json()["data"])


def add_agent(world: World, name: str, servers: list[str]) -> str:
    with world.api() as api:
        created = api.post("/api/v1/agents", json={
            "name": name, "model": "openai/scripted", "tools": [], "mcp_servers": servers,
            "instructions": "Use the tools you are given.",
        })  # fmt: skip
    assert created.status_code == 201, created.text
    return str(created.json()["data"]["id"])


@pytest.fixture(scope="module")
def weather_server(world: World) -> dict[str, Any]:
    return add_server(world, name="localweather", url=world.mcp.url, token=MCP_TOKEN,
                      allowed_tools=["weather", "slow"], timeout_s=2)  # fmt: skip


@pytest.fixture(scope="module")
def agent(world: World, weather_server: dict[str, Any]) -> str:
    return add_agent(world, "forecaster", [weather_server["id"]])


def by_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def offered(request: dict[str, Any]) -> list[str]:
    return sorted(tool["function"]["name"] for tool in request.get("tools") or [])


def test_the_agent_calls_the_mcp_tool_and_answers_with_its_result(world: World, agent: str) -> None:
    question = "What is the weather in Oslo?"
    calls_before = len(world.mcp.calls)
    run, events = world.run(agent, question)
    assert run["status"] == "succeeded", run
    assert WEATHER.format(city="Oslo") in run["output"]
    (start,) = by_type(events, "tool_start")
    (end,) = by_type(events, "tool_end")
    assert start["name"] == "localweather__weather" and start["arguments"] == {"city": "Oslo"}
    assert end["is_error"] is False and "Sunny" in end["summary"]
    assert world.mcp.calls[calls_before:] == ["weather"]
    assert world.mcp.authorization[-1] == f"Bearer {MCP_TOKEN}"  # the sealed token, opened for the call
    first = world.requests_about(question)[0]
    assert offered(first) == ["localweather__slow", "localweather__weather"]  # never secret_tool
    described = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert described["localweather__weather"]["parameters"]["required"] == ["city"]
    assert "The weather in a city" in described["localweather__weather"]["description"]


def test_a_tool_off_the_allow_list_is_never_offered_nor_run(world: World, agent: str) -> None:
    question = "Tell me the secret."
    calls_before = len(world.mcp.calls)
    run, events = world.run(agent, question)
    assert run["status"] == "succeeded", run
    assert all("localweather__secret_tool" not in offered(r) for r in world.requests_about(question))
    (end,) = by_type(events, "tool_end")
    assert end["name"] == "localweather__secret_tool" and end["is_error"] is True and end["summary"] == "unknown tool"
    assert "secret_tool" not in world.mcp.calls[calls_before:]
    assert "the secret" not in run["output"]


def test_a_slow_tool_hits_the_timeout_and_the_run_goes_on(world: World, agent: str) -> None:
    t0 = time.monotonic()
    run, events = world.run(agent, "Run the slow thing.")
    assert run["status"] == "succeeded", run
    (end,) = by_type(events, "tool_end")
    assert end["name"] == "localweather__slow" and end["is_error"] is True and "timed out after 2 s" in end["summary"]
    assert "timed out after 2 s" in run["output"]  # the model read the tool error and answered
    assert time.monotonic() - t0 < 6  # the tool would take 6 s


def test_an_unreachable_server_leaves_a_note_and_the_run_starts_without_it(
    world: World, weather_server: dict[str, Any]
) -> None:
    offline = add_server(world, name="offline", url=f"http://127.0.0.1:{free_port()}/mcp", allowed_tools=["weather"])
    agent = add_agent(world, "half-connected", [offline["id"], weather_server["id"]])
    question = "What is the weather in Bergen?"
    run, events = world.run(agent, question)
    assert run["status"] == "succeeded", run
    note = by_type(events, "thinking")[0]["content"]
    assert "MCP server 'offline' is unavailable" in note and "not offered in this run" in note
    assert offered(world.requests_about(question)[0]) == ["localweather__slow", "localweather__weather"]
    assert WEATHER.format(city="Oslo") in run["output"]
    assert "unavailable at run start" in Path(world.ragline.log_path).read_text()


def test_a_server_outside_the_allow_list_is_refused_when_saved(world: World) -> None:
    with world.api() as api:
        for url in ("http://127.0.0.2:8080/mcp", "http://10.1.2.3/mcp", "http://169.254.169.254/latest"):
            refused = api.post("/api/v1/mcp-servers", json={"name": "internal", "url": url})
            assert refused.status_code == 422, refused.text
            assert refused.json()["code"] == "blocked_destination"
        listed = api.get("/api/v1/mcp-servers").json()["data"]
    assert "internal" not in [s["name"] for s in listed]
    assert MCP_TOKEN not in str(listed)

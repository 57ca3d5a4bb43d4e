"""Ragline as an MCP server, driven by the official MCP Python client against a real ``ragline serve``.

The client (``mcp.client.streamable_http.streamable_http_client`` + ``ClientSession``, the ``mcp`` SDK 2.x names of
v1's ``streamablehttp_client``) is pointed at ``http://host/mcp`` with a Ragline token in ``Authorization`` and
nothing else: it lists the tools, searches the handbook (file and page cited), lists the files, asks the assistant
(a run recorded at ``/api/v1/executions``), and a bad token gets nowhere.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent

from tests.compat.conftest import Ragline

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def mcp_session(ragline: Ragline, token: str | None = None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token or ragline.token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(f"{ragline.base_url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def test_lists_its_tools_with_schemas(ragline: Ragline) -> None:
    async with mcp_session(ragline) as session:
        info = session.initialize_result
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert info is not None and info.server_info.name == "ragline"
    assert set(tools) == {"search", "list_files", "ask"}
    search = tools["search"].input_schema
    assert search["required"] == ["query"]
    assert {"query", "top_k", "mode", "knowledge_bases"} <= set(search["properties"])
    assert all(tool.description for tool in tools.values())


async def test_search_finds_the_handbook_page_and_cites_it(ragline: Ragline) -> None:
    async with mcp_session(ragline) as session:
        result = await session.call_tool("search", {"query": "parental leave", "top_k": 3})
        by_name = await session.call_tool("search", {"query": "parental leave", "knowledge_bases": ["handbook"]})
        unknown = await session.call_tool("search", {"query": "parental leave", "knowledge_bases": ["nope"]})
        sparse = await session.call_tool("search", {"query": "parental leave", "mode": "sparse", "top_k": 1})
    best = structured(result)["passages"][0]
    assert best["file"] == "handbook.pdf" and best["page"] == 5 and best["kb_id"] == ragline.kb_id
    assert "sixteen weeks" in best["text"] and best["chunk_id"] and best["knowledge_base"] == "handbook"
    assert "[1] handbook.pdf, page 5" in text_of(result)
    assert structured(by_name)["passages"][0]["chunk_id"] == best["chunk_id"]
    assert unknown.is_error and "unknown knowledge base 'nope'" in text_of(unknown)
    assert structured(sparse)["passages"][0]["page"] == 5


async def test_list_files_shows_the_handbook_ready(ragline: Ragline) -> None:
    async with mcp_session(ragline) as session:
        result = await session.call_tool("list_files", {})
    bases = {kb["id"]: kb for kb in structured(result)["knowledge_bases"]}
    handbook = bases[ragline.kb_id]
    assert handbook["name"] == "handbook" and handbook["file_count"] >= 1
    assert {"handbook.pdf": "ready"}.items() <= {f["name"]: f["status"] for f in handbook["files"]}.items()
    assert "handbook.pdf" in text_of(result)


async def test_ask_answers_with_citations_as_a_recorded_run(ragline: Ragline) -> None:
    async with mcp_session(ragline) as session:
        result = await session.call_tool("ask", {"question": "How long is parental leave?"})
    answer = structured(result)
    assert "sixteen weeks" in answer["answer"] and "sixteen weeks" in text_of(result)
    assert answer["citations"] and answer["citations"][0]["file"] == "handbook.pdf"
    assert answer["citations"][0]["page"] == 5
    with ragline.admin() as api:
        listed = api.get("/api/v1/executions", params={"limit": 100}).json()["data"]
        run = api.get(f"/api/v1/executions/{answer['run_id']}").json()["data"]
    assert answer["run_id"] in [r["id"] for r in listed]
    assert run["status"] == "succeeded" and run["input"] == "How long is parental leave?"


async def test_a_token_limited_to_other_knowledge_sees_none_of_the_handbook(ragline: Ragline) -> None:
    with ragline.admin() as api:
        other = api.post("/api/v1/knowledge-bases", json={"name": "mcp-elsewhere"}).json()["data"]["id"]
        made = api.post("/api/v1/tokens", json={"name": "mcp-limited", "role": "viewer", "kb_ids": [other]})
    assert made.status_code == 201, made.text
    limited = made.json()["data"]["secret"]
    async with mcp_session(ragline, limited) as session:
        found = await session.call_tool("search", {"query": "parental leave"})
        named = await session.call_tool("search", {"query": "parental leave", "knowledge_bases": [ragline.kb_id]})
        files = await session.call_tool("list_files", {})
    assert structured(found)["passages"] == []
    assert named.is_error
    assert [kb["id"] for kb in structured(files)["knowledge_bases"]] == [other]


async def test_a_bad_token_is_refused(ragline: Ragline) -> None:
    with pytest.raises(ExceptionGroup) as refused:  # the SDK's task groups raise its error in a group
        async with mcp_session(ragline, "rl_not_a_real_token") as session:
            await session.list_tools()
    leaf: BaseException = refused.value
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, MCPError) and "error response" in leaf.message


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer rl_not_a_real_token"}, {"X-API-Key": "rl_nope"}])
def test_requests_without_a_valid_token_get_401_with_the_envelope(ragline: Ragline, headers: dict[str, str]) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    response = httpx.post(f"{ragline.base_url}/mcp", json=body, headers=headers, timeout=10)
    assert response.status_code == 401, response.text
    envelope = response.json()
    assert envelope["data"] is None and envelope["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_x_api_key_works_too_like_on_every_route(ragline: Ragline) -> None:
    answer = httpx.post(
        f"{ragline.base_url}/mcp", timeout=30,
        headers={"X-API-Key": ragline.token, "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert {t["name"] for t in json.loads(answer.text)["result"]["tools"]} == {"search", "list_files", "ask"}

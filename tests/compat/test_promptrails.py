"""Seed 002 (PromptRails' API reference): its documented requests, sent verbatim but for host and prefix."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.compat.conftest import ANSWER, PREAMBLE, Ragline, sse_frames

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def assert_iso_times(value: Any, where: str = "") -> int:
    """Every ``*_at`` and ``ts`` field anywhere in ``value`` is ISO-8601 UTC (or null); returns how many."""
    found = 0
    if isinstance(value, dict):
        for key, item in value.items():
            if (key.endswith("_at") or key == "ts") and item is not None:
                assert isinstance(item, str) and ISO_UTC.match(item), f"{where}.{key} = {item!r}"
                found += 1
            found += assert_iso_times(item, f"{where}.{key}")
    elif isinstance(value, list):
        found += sum(assert_iso_times(item, f"{where}[]") for item in value)
    return found


def test_api_key_bearer_and_workspace_header_authenticate(ragline: Ragline) -> None:
    # curl -H "X-API-Key: pr_live_abc123..." https://api.promptrails.ai/api/v1/agents
    with ragline.client(**{"X-API-Key": ragline.token}) as client:
        listed = client.get("/api/v1/agents")
        assert listed.status_code == 200, listed.text
        workspace_id = client.get("/api/v1/me").json()["data"]["workspace_id"]
    # curl -H "Authorization: Bearer eyJhbGciOiJIUzI1NiIs..." https://api.promptrails.ai/api/v1/agents
    with ragline.client(Authorization=f"Bearer {ragline.token}") as client:
        assert client.get("/api/v1/agents").status_code == 200
    # curl -H "X-API-Key: ..." -H "X-Workspace-ID: 2NxAbc123def456ghi789jkl" .../api/v1/agents
    with ragline.client(**{"X-API-Key": ragline.token, "X-Workspace-ID": workspace_id}) as client:
        assert client.get("/api/v1/agents").status_code == 200
    with ragline.client(**{"X-API-Key": ragline.token, "X-Workspace-ID": "ws_not_mine"}) as client:
        assert client.get("/api/v1/agents").status_code in (401, 403, 404)


def test_create_agent_as_documented_and_read_the_envelope(ragline: Ragline) -> None:
    with ragline.client(**{"X-API-Key": ragline.token}) as client:
        created = client.post(
            "/api/v1/agents",
            headers={"Content-Type": "application/json"},
            content=b'{\n    "name": "My Agent",\n    "type": "simple",\n    "description": "A simple agent"\n  }',
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["message"] == "Agent created successfully"
        agent = body["data"]
        assert (agent["name"], agent["type"], agent["status"], agent["description"]) == (
            "My Agent", "simple", "active", "A simple agent",
        )  # fmt: skip
        assert isinstance(agent["id"], str) and ISO_UTC.match(agent["created_at"])
        assert client.get(f"/api/v1/agents/{agent['id']}").json()["data"]["type"] == "simple"  # round-trips


def test_list_envelope_and_pagination(ragline: Ragline) -> None:
    with ragline.admin() as client:
        for n in range(12):
            assert client.post("/api/v1/agents", json={"name": f"paged {n}"}).status_code == 201
        # GET /api/v1/agents?page=2&limit=10
        page = client.get("/api/v1/agents", params={"page": 2, "limit": 10}).json()
    assert set(page) == {"data", "message", "pagination"} and isinstance(page["data"], list)
    pagination = page["pagination"]
    assert (pagination["page"], pagination["limit"]) == (2, 10)
    assert pagination["total"] >= 12 and pagination["total_pages"] == -(-pagination["total"] // 10)
    assert 1 <= len(page["data"]) <= 10 and {"id", "name"} <= set(page["data"][0])


def test_error_envelope_and_codes(ragline: Ragline) -> None:
    with ragline.admin() as client:
        missing = client.get("/api/v1/agents/agt_000000000000000000000000")
        assert missing.status_code == 404
        assert missing.json() == {
            "data": None, "error": "Agent not found", "message": "The requested agent does not exist",
            "code": "not_found", "request_id": missing.headers["x-request-id"],
        }  # fmt: skip
        assert client.post("/api/v1/agents", json={"name": ""}).status_code == 422  # validation error
        assert client.post("/api/v1/knowledge-bases", json={"name": "handbook"}).status_code == 409  # exists
        malformed = client.post("/api/v1/agents", content=b"{not json", headers={"Content-Type": "application/json"})
        assert malformed.status_code == 400
        viewer = client.post("/api/v1/tokens", json={"name": "read only", "role": "viewer"}).json()["data"]["secret"]
    with ragline.client() as anonymous:
        assert anonymous.get("/api/v1/agents").status_code == 401
    with ragline.client(**{"X-API-Key": viewer}) as client:
        forbidden = client.post("/api/v1/agents", json={"name": "not allowed"})
        assert forbidden.status_code == 403
    for response in (missing, malformed, forbidden):
        body = response.json()
        assert body["data"] is None and body["error"] and body["message"] and body["code"]


def test_chat_stream_frames_as_documented(ragline: Ragline) -> None:
    """POST /chat/sessions/{sessionId}/messages/stream: the event table's payloads, read with httpx-sse."""
    with ragline.admin() as client:
        agent = client.post(
            "/api/v1/agents",
            json={"name": "hr", "model": "openai/scripted", "kb_ids": [ragline.kb_id], "tools": ["knowledge_search"]},
        ).json()["data"]
        session = client.post("/api/v1/chat/sessions", json={"agent_id": agent["id"]}).json()["data"]
        frames = sse_frames(
            client, "POST", f"/api/v1/chat/sessions/{session['id']}/messages/stream",
            json={"content": "How long is parental leave?"},
        )  # fmt: skip
        history = client.get(f"/api/v1/chat/sessions/{session['id']}/messages").json()["data"]
        replay = sse_frames(client, "GET", f"/api/v1/executions/{frames[0][1]['execution_id']}/stream")
    names = [name for name, _ in frames]
    assert names[0] == "execution" and names[-1] == "done"
    execution = frames[0][1]
    assert execution["execution_id"] == execution["run_id"]
    assert execution["user_message_id"] == str(history[0]["id"])  # the stored user message
    thinking = [data for name, data in frames if name == "thinking"]
    assert thinking[0]["content"] == PREAMBLE  # text written before the tool call is reasoning, not answer
    start = next(data for name, data in frames if name == "tool_start")
    end = next(data for name, data in frames if name == "tool_end")
    assert start["name"] == end["name"] == "knowledge_search" and start["id"] == end["id"] and end["summary"]
    answer = "".join(data["content"] for name, data in frames if name == "content")
    done = frames[-1][1]
    assert answer == ANSWER == done["output"]  # content carries exactly the final answer
    assert done["token_usage"]["total"] > 0 and done["time"] > 0
    assert names.index("thinking") < names.index("tool_start") < names.index("content")
    assert [name for name, _ in replay] == names  # GET /executions/{executionId}/stream: the same run
    assert sum(assert_iso_times(data) for _, data in frames) == len(frames)


def test_error_frame_carries_a_message(ragline: Ragline) -> None:
    with ragline.admin() as client:
        agent = client.post("/api/v1/agents", json={"name": "broken", "model": "openai/failing", "tools": []})
        agent = agent.json()["data"]
        frames = sse_frames(client, "POST", f"/api/v1/agents/{agent['id']}/run/stream", json={"input": "hi"})
    name, data = frames[-1]
    assert name == "error" and data["message"] and data["code"] == "model_error"

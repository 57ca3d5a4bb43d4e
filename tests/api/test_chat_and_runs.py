"""Assistant chat and agent runs through the API, with the built-in extractive model (no provider)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def parse_sse(text: str) -> list[dict]:
    """Frames of a finished SSE body: event name, id and decoded data (comments skipped)."""
    frames = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = fields.get(key, "") + value.removeprefix(" ")
        if "event" in fields:
            frames.append({"event": fields["event"], "id": fields.get("id"), "data": json.loads(fields["data"])})
    return frames


def test_assistant_answers_with_verified_citations_and_keeps_history(api, handbook):
    response = api.request("POST", "/api/v1/assistant/chat", json={"message": "How many weeks of parental leave?"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(response.text)
    names = [f["event"] for f in frames]
    assert names[0] == "execution" and names[-1] == "done"
    assert names.count("done") + names.count("error") == 1
    assert [int(f["id"]) for f in frames] == list(range(1, len(frames) + 1))
    assert "tool_start" in names and "tool_end" in names and "content" in names
    citations = [f["data"] for f in frames if f["event"] == "citation"]
    assert citations and citations[0]["file_name"] == "handbook.pdf" and citations[0]["page"] == 5
    assert citations[0]["kb_id"] == handbook  # the download route's path: /knowledge-bases/{kb_id}/files/{file_id}
    listed = api.request("GET", "/api/v1/knowledge-bases").json()["data"]
    assert [(k["id"], k["file_count"]) for k in listed] == [(handbook, 1)]
    done = frames[-1]["data"]
    assert "sixteen weeks" in done["output"] and done["token_usage"]["total"] > 0
    streamed = "".join(f["data"]["text"] for f in frames if f["event"] == "content")
    assert streamed.endswith(done["output"]) or done["output"] in streamed

    run_id = frames[0]["data"]["run_id"]
    session_id = frames[0]["data"]["session_id"]
    stored = api.request("GET", f"/api/v1/executions/{run_id}/events").json()["data"]
    assert [e["type"] for e in stored] == names  # what was streamed is what was stored
    record = api.request("GET", f"/api/v1/executions/{run_id}").json()["data"]
    assert record["status"] == "succeeded" and record["kind"] == "chat" and record["steps"]
    history = api.request("GET", f"/api/v1/chat/sessions/{session_id}/messages").json()
    assert [m["role"] for m in history["data"]] == ["user", "assistant"]
    assert history["data"][1]["citations"][0]["chunk_id"] == citations[0]["chunk_id"]


def test_agent_crud_and_run(api, handbook):
    created = api.request("POST", "/api/v1/agents", json={"name": "hr", "kb_ids": [handbook], "max_steps": 4})
    assert created.status_code == 201, created.text
    agent = created.json()["data"]
    assert agent["model"] == "ragline/extractive" and agent["tools"] == ["knowledge_search"]
    refused = api.request(
        "POST",
        f"/api/v1/agents/{agent['id']}/run",
        json={"input": "hi", "api_base": "http://169.254.169.254", "model": "openai/x"},
    )
    assert refused.status_code == 422 and refused.json()["data"] is None
    started = api.request("POST", f"/api/v1/agents/{agent['id']}/run", json={"input": "expense receipts deadline"})
    assert started.status_code == 202
    run_id = started.json()["data"]["run_id"]
    stream = api.request("GET", f"/api/v1/executions/{run_id}/stream")
    frames = parse_sse(stream.text)
    assert frames[-1]["event"] == "done" and "thirty days" in frames[-1]["data"]["output"]
    resumed = parse_sse(
        api.request("GET", f"/api/v1/executions/{run_id}/stream", headers={"Last-Event-ID": frames[2]["id"]}).text
    )
    assert [f["id"] for f in resumed] == [f["id"] for f in frames[3:]]
    runs = api.request("GET", f"/api/v1/executions?agent_id={agent['id']}").json()
    assert runs["pagination"]["total"] == 1 and runs["data"][0]["id"] == run_id
    bad_kb = api.request("PATCH", f"/api/v1/agents/{agent['id']}", json={"kb_ids": ["kb_nope"]})
    assert bad_kb.status_code == 422
    assert api.request("DELETE", f"/api/v1/agents/{agent['id']}").status_code == 200
    assert api.request("GET", f"/api/v1/agents/{agent['id']}").status_code == 404

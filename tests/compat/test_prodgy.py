"""Seed 004 (Prodgy's assistant API): its documented request, sent verbatim but for host and prefix, and
one assistant run rendered by a PromptRails-style client and a Prodgy-style client alike."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.compat.conftest import Ragline, sse_frames

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def ask(ragline: Ragline, token: str, message: str, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    """curl -N -X POST https://<instance>/api/assistant/chat -H "X-API-Token: prodgy_<token>"
    -H "Content-Type: application/json" -d '{"message": "...", "session_id": "my-session-01"}'"""
    with ragline.client(**{"X-API-Token": token, "Content-Type": "application/json"}) as client:
        return sse_frames(client, "POST", "/api/v1/assistant/chat", json={"message": message, "session_id": session_id})


def test_assistant_chat_as_documented(ragline: Ragline) -> None:
    frames = ask(ragline, ragline.token, "How does onboarding work?", "my-session-01")
    names = [name for name, _ in frames]
    # session first among Prodgy's frames, thinking while it works, one ai_response before done
    prodgy = [name for name in names if name in ("session", "thinking", "ai_response", "error", "done")]
    assert prodgy[0] == "session" and prodgy[-2:] == ["ai_response", "done"] and "thinking" in prodgy
    assert names.count("ai_response") == 1 and "error" not in names
    session = next(data for name, data in frames if name == "session")
    response = next(data for name, data in frames if name == "ai_response")
    done = frames[-1][1]
    assert response["content"] == done["output"] and response["content"]
    assert response["metadata"]["execution_id"] == done["run_id"] and response["metadata"]["model"]
    assert response["metadata"]["token_usage"]["total"] == done["token_usage"]["total"] > 0
    assert response["metadata"]["session_id"] == session["session_id"]
    for source in response["sources"]:
        assert {"file_name", "page", "quote", "chunk_id"} <= set(source)

    again = ask(ragline, ragline.token, "And how long is parental leave?", "my-session-01")
    assert next(data for name, data in again if name == "session")["session_id"] == session["session_id"]
    # GET /api/assistant/chat/history?session_id=my-session-01
    with ragline.client(**{"X-API-Token": ragline.token}) as client:
        history = client.get("/api/v1/assistant/chat/history", params={"session_id": "my-session-01"}).json()
    assert [m["role"] for m in history["data"]] == ["user", "assistant", "user", "assistant"]
    assert history["data"][0]["content"] == "How does onboarding work?"
    assert history["data"][3]["content"] == again[-1][1]["output"]


def test_a_client_chosen_session_id_belongs_to_its_caller(ragline: Ragline) -> None:
    with ragline.admin() as admin:
        other = admin.post("/api/v1/users", json={"name": "second-member", "role": "viewer"}).json()["data"]
        token = admin.post("/api/v1/tokens", json={"name": "theirs", "user_id": other["id"]}).json()["data"]["secret"]
    ask(ragline, ragline.token, "How does onboarding work?", "shared-name")
    theirs = ask(ragline, token, "What about vacation days?", "shared-name")  # the same id, another member
    with ragline.client(**{"X-API-Token": token}) as client:
        history = client.get("/api/v1/assistant/chat/history", params={"session_id": "shared-name"}).json()["data"]
        mine_by_id = next(data for name, data in theirs if name == "session")["session_id"]
        assert client.get(f"/api/v1/chat/sessions/{mine_by_id}").status_code == 200
    assert [m["content"] for m in history if m["role"] == "user"] == ["What about vacation days?"]


def test_one_run_renders_the_same_answer_for_both_kinds_of_client(ragline: Ragline) -> None:
    """A Prodgy-style client (session, ai_response, done) and a PromptRails-style one (content.content until
    done) read the same assistant run: both render the same answer."""
    rendered: dict[str, str] = {}
    run_id: list[str] = []
    attached = threading.Event()

    def promptrails_client() -> None:
        attached.wait(30)
        text = []
        client = httpx.Client(base_url=ragline.base_url, headers={"X-API-Key": ragline.token}, timeout=30)
        with client, connect_sse(client, "GET", f"/api/v1/executions/{run_id[0]}/stream") as source:
            for sse in source.iter_sse():
                if sse.event == "content":
                    text.append(sse.json()["content"])
                elif sse.event == "done":
                    break
        rendered["promptrails"] = "".join(text)

    follower = threading.Thread(target=promptrails_client)
    follower.start()
    with ragline.client(**{"X-API-Token": ragline.token}) as client:
        body = {"message": "How many weeks of parental leave?", "session_id": "two-clients"}
        with connect_sse(client, "POST", "/api/v1/assistant/chat", json=body) as source:
            for sse in source.iter_sse():
                data = sse.json()
                if sse.event == "session":
                    run_id.append(data["run_id"])
                    attached.set()
                elif sse.event == "ai_response":
                    rendered["prodgy"] = data["content"]
                elif sse.event == "done":
                    break
    follower.join(30)
    assert rendered["prodgy"] and rendered["prodgy"] == rendered["promptrails"]

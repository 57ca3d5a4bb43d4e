"""Seed 001 (a prompt runtime's API): login, me, users, agents and the run log, as its clients call them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compat.conftest import Ragline

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_login_me_run_and_logout(ragline: Ragline) -> None:
    with ragline.admin() as admin:
        # GET/POST /api/users (user management, admin only)
        user = {"name": "ops-lead", "password": "correct horse battery", "role": "editor"}
        created = admin.post("/api/v1/users", json=user)
        assert created.status_code == 201, created.text
        assert any(u["name"] == "ops-lead" for u in admin.get("/api/v1/users").json()["data"])
    with ragline.client() as anonymous:
        # POST /api/login: username and password for a session token
        login = anonymous.post("/api/v1/login", json={"username": "ops-lead", "password": "correct horse battery"})
        assert login.status_code == 200, login.text
        session = login.json()["data"]
        assert session["token"] and session["expires_at"].endswith("Z") and session["user"]["role"] == "editor"
        wrong = anonymous.post("/api/v1/login", json={"username": "ops-lead", "password": "wrong"})
        unknown = anonymous.post("/api/v1/login", json={"username": "nobody", "password": "wrong"})
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json()["request_id"] != unknown.json()["request_id"]
        assert {**wrong.json(), "request_id": ""} == {**unknown.json(), "request_id": ""}
    with ragline.client(Authorization=f"Bearer {session['token']}") as client:
        # GET /api/me: current user and role
        me = client.get("/api/v1/me").json()["data"]
        assert (me["user_name"], me["role"]) == ("ops-lead", "editor")
        # POST /api/agents, POST /api/agents/:id/run
        agent = client.post("/api/v1/agents", json={"name": "runner", "kb_ids": [ragline.kb_id]}).json()["data"]
        run = client.post(f"/api/v1/agents/{agent['id']}/run", json={"input": "parental leave"})
        assert run.status_code == 202
        run_id = run.json()["data"]["run_id"]
        # GET /api/runs: the run log (paged: ?limit= ?offset=)
        log = client.get("/api/v1/runs", params={"limit": 5, "offset": 0}).json()
        assert run_id in [r["id"] for r in log["data"]] and log["pagination"]["limit"] == 5
        assert log["data"][0]["started_at"].endswith("Z")
        # POST /api/logout: revokes the current session
        assert client.post("/api/v1/logout").status_code == 200
        assert client.get("/api/v1/me").status_code == 401


def test_prompts_agents_and_users_as_seed_001_edits_publishes_and_rolls_back(ragline: Ragline) -> None:
    with ragline.admin() as api:
        # PUT /api/users/:id and PUT /api/agents/:id: partial updates, like PATCH
        user = api.post("/api/v1/users", json={"name": "put-user", "password": "correct horse battery"})
        assert user.status_code == 201, user.text
        renamed = api.put(f"/api/v1/users/{user.json()['data']['id']}", json={"role": "editor"})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["data"]["role"] == "editor" and renamed.json()["data"]["name"] == "put-user"
        agent = api.post("/api/v1/agents", json={"name": "put-agent", "instructions": "Be brief."}).json()["data"]
        updated = api.put(f"/api/v1/agents/{agent['id']}", json={"description": "seed 001 edits with PUT"})
        assert updated.status_code == 200, updated.text
        assert updated.json()["data"]["description"] == "seed 001 edits with PUT"
        assert updated.json()["data"]["instructions"] == "Be brief."
        # POST /api/prompts, PUT /api/prompts/:id, POST /api/prompts/publish, POST /api/prompts/rollback
        prompt = api.post("/api/v1/prompts", json={
            "key": "seed-greeting", "messages": [{"role": "user", "content": "Hello {{ who }}"}],
            "variables": [{"name": "who", "default": "llama"}]}).json()["data"]  # fmt: skip
        first = api.post("/api/v1/prompts/publish", json={"id": prompt["id"], "note": "v1"})
        assert first.status_code == 201, first.text
        edited = api.put(f"/api/v1/prompts/{prompt['id']}", json={
            "messages": [{"role": "user", "content": "Good day {{ who }}"}]})  # fmt: skip
        assert edited.status_code == 200, edited.text
        second = api.post("/api/v1/prompts/publish", json={"prompt_id": prompt["id"], "note": "v2"})
        assert second.json()["data"]["number"] == 2
        assert _served(api, "seed-greeting") == "Good day {{ who }}"
        back = api.post("/api/v1/prompts/rollback", json={"id": prompt["id"], "version": 1})
        assert back.status_code == 200, back.text
        assert _served(api, "seed-greeting") == "Hello {{ who }}"
        # the prompt must be named, once
        nameless = api.post("/api/v1/prompts/publish", json={"note": "which?"})
        assert nameless.status_code == 422 and "id" in nameless.json()["message"]
        both = api.post("/api/v1/prompts/rollback", json={"id": prompt["id"], "prompt_id": "prm_other", "version": 1})
        assert both.status_code == 422
        missing = api.post("/api/v1/prompts/publish", json={"id": "prm_nope"})
        assert missing.status_code == 404
        # GET /api/runs/stats: the same statistics as /executions/stats
        window = {"since": "2026-01-01T00:00:00Z", "until": "2099-01-01T00:00:00Z"}
        stats = api.get("/api/v1/runs/stats", params=window)
        assert stats.status_code == 200
        assert stats.json()["data"] == api.get("/api/v1/executions/stats", params=window).json()["data"]


def _served(api: Any, key: str) -> str:
    fetched = api.get(f"/api/v1/sdk/prompts/{key}")
    assert fetched.status_code == 200, fetched.text
    return str(fetched.json()["data"]["messages"][0]["content"])

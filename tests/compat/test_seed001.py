"""Seed 001 (a prompt runtime's API): login, me, users, agents and the run log, as its clients call them."""

from __future__ import annotations

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

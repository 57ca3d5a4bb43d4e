"""Environments, write-only variables, model configurations, the audit log and run statistics, through the app."""

from __future__ import annotations

import glob
import logging
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update

from engine.db.models import ModelConfig
from tests.api.conftest import Api, make_settings, open_api
from tests.api.test_chat_and_runs import parse_sse
from tests.helpers.openai_server import Reply, Server, serve

pytestmark = pytest.mark.slow
CANARY_KEY = "sk-canary-7f3a9c2e5b1d4a8e9f0c"
CANARY_VAR = "sk-canary-var-4d2b8e1f6a9c3e7b"


@pytest.fixture
def model_server() -> Iterator[Server]:
    yield from serve(default=lambda n: Reply(text="Configured answer."))


@pytest.fixture
def app(tmp_path: Any, embedder: Any) -> Iterator[Api]:
    settings = make_settings(tmp_path / "data", model_allow_networks=("127.0.0.1/32",))
    with open_api(settings, embedder) as api:
        yield api


def raw_database(app: Api) -> str:
    """Every byte the metadata database holds: the SQLite file and its WAL, or a PostgreSQL dump."""
    settings = app.services.settings
    if settings.database_url.startswith("postgresql"):
        url = settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
        pg_dump = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))), shutil.which("pg_dump"))
        assert pg_dump, "pg_dump is needed to check a PostgreSQL database"
        return subprocess.run([pg_dump, url], capture_output=True, check=True).stdout.decode("latin-1")
    files = [settings.data_dir / "ragline.db", settings.data_dir / "ragline.db-wal"]
    return b"".join(f.read_bytes() for f in files if f.exists()).decode("latin-1")


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def test_environments_default_unique_names_and_the_default_rule(app: Api) -> None:
    listed = app.request("GET", "/api/v1/environments").json()["data"]
    assert [(e["name"], e["is_default"]) for e in listed] == [("production", True)]
    staging = created(app.request("POST", "/api/v1/environments", json={"name": "staging"}))
    assert app.request("POST", "/api/v1/environments", json={"name": "staging"}).status_code == 409
    production = listed[0]
    assert app.request("DELETE", f"/api/v1/environments/{production['id']}").status_code == 409  # the default
    assert app.request("PATCH", f"/api/v1/environments/{staging['id']}", json={"is_default": True}).status_code == 200
    names = {e["name"]: e["is_default"] for e in app.request("GET", "/api/v1/environments").json()["data"]}
    assert names == {"production": False, "staging": True}
    assert app.request("DELETE", f"/api/v1/environments/{production['id']}").status_code == 200


def test_variables_are_write_only_and_resolved_at_run_time(app: Api, model_server: Server) -> None:
    staging = created(app.request("POST", "/api/v1/environments", json={"name": "staging"}))
    variable = created(app.request("POST", "/api/v1/variables", json={"name": "GREETING", "value": CANARY_VAR}))
    assert variable["has_value"] is True and "value" not in variable
    created(app.request("POST", "/api/v1/variables",
                        json={"name": "GREETING", "value": "hello from staging", "environment_id": "staging"}))
    listed = app.request("GET", "/api/v1/variables").text
    listed += app.request("GET", f"/api/v1/variables/{variable['id']}").text
    assert CANARY_VAR not in listed and '"has_value":true' in listed.replace(" ", "")
    model = created(app.request("POST", "/api/v1/models", json={
        "name": "scripted", "model": "openai/scripted", "api_base": model_server.base_url, "api_key": CANARY_KEY,
    }))
    agent = created(app.request("POST", "/api/v1/agents", json={
        "name": "greeter", "model_config_id": model["id"], "tools": [], "instructions": "Say {{vars.GREETING}}.",
    }))
    for environment, expected in ((None, CANARY_VAR), (staging["name"], "hello from staging")):
        body = {"input": "hi", **({"environment": environment} if environment else {})}
        frames = parse_sse(app.request("POST", f"/api/v1/agents/{agent['id']}/run/stream", json=body).text)
        assert frames[-1]["event"] == "done", frames[-1]
        system = model_server.requests[-1]["messages"][0]
        assert system["role"] == "system" and f"Say {expected}." in system["content"]


def test_a_run_uses_its_model_configuration_and_nothing_from_the_request(app: Api, model_server: Server) -> None:
    model = created(app.request("POST", "/api/v1/models", json={
        "name": "scripted", "model": "openai/scripted", "api_base": model_server.base_url, "api_key": CANARY_KEY,
    }))
    assert model["has_api_key"] is True and CANARY_KEY not in str(model)
    agent = created(app.request("POST", "/api/v1/agents", json={"name": "a", "model_config_id": model["id"],
                                                                "tools": []}))
    assert agent["model"] == "openai/scripted"
    frames = parse_sse(app.request("POST", f"/api/v1/agents/{agent['id']}/run/stream", json={"input": "hi"}).text)
    assert frames[-1]["data"]["output"] == "Configured answer."
    assert model_server.headers[-1]["authorization"] == f"Bearer {CANARY_KEY}"  # the configuration's key, sent
    for override in ({"api_base": "http://169.254.169.254"}, {"api_key": "sk-attacker"}, {"model": "openai/x"}):
        refused = app.request("POST", f"/api/v1/agents/{agent['id']}/run", json={"input": "hi", **override})
        assert refused.status_code == 422
    assert len(model_server.requests) == 1


def test_no_secret_leaks_anywhere(app: Api, model_server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """Canaries as a variable and a model key; every route exercised; a provider error that quotes the key."""
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = app.request(method, path, **kwargs)
        seen.append(response.text + repr(dict(response.headers)))
        return response

    variable = call("POST", "/api/v1/variables", json={"name": "TOKEN", "value": CANARY_VAR}).json()["data"]
    model = call("POST", "/api/v1/models", json={
        "name": "leaky", "model": "openai/scripted", "api_base": model_server.base_url, "api_key": CANARY_KEY,
        "client_secret": CANARY_KEY + "-secret",
    }).json()["data"]
    agent = call("POST", "/api/v1/agents", json={"name": "leaky", "model_config_id": model["id"], "tools": [],
                                                 "instructions": "Use {{vars.TOKEN}}."}).json()["data"]
    model_server.script.extend([Reply(status=401, text=f"Incorrect API key provided: {CANARY_KEY}")] * 3)
    run = call("POST", f"/api/v1/agents/{agent['id']}/run/stream", json={"input": "hi"})
    frames = parse_sse(run.text)
    assert frames[-1]["event"] == "error" and frames[-1]["data"]["code"] == "model_error"
    run_id = frames[0]["data"]["run_id"]
    for path in ("/api/v1/variables", f"/api/v1/variables/{variable['id']}", "/api/v1/models",
                 f"/api/v1/models/{model['id']}", f"/api/v1/executions/{run_id}", f"/api/v1/executions/{run_id}/events",
                 "/api/v1/executions", "/api/v1/audit", "/api/v1/executions/stats", f"/api/v1/agents/{agent['id']}",
                 "/api/v1/system-models/visible", "/api/v1/environments"):
        assert call("GET", path).status_code == 200, path
    call("PATCH", f"/api/v1/variables/{variable['id']}", json={"value": CANARY_VAR + "-2"})
    call("PATCH", f"/api/v1/models/{model['id']}", json={"api_key": CANARY_KEY + "-2"})
    haystacks = {"responses": "\n".join(seen), "logs": caplog.text, "database": raw_database(app)}
    for canary in (CANARY_VAR, CANARY_KEY, "canary"):
        leaks = [where for where, text in haystacks.items() if canary in text]
        assert not leaks, f"{canary!r} found in {leaks}"
    assert len(model_server.requests) >= 1  # the provider was called (and its error quoted the key)


def test_every_write_leaves_one_audit_entry_without_secrets(app: Api) -> None:
    me = app.request("GET", "/api/v1/me").json()["data"]
    before = app.request("GET", "/api/v1/audit", params={"limit": 100}).json()["pagination"]["total"]
    agent = created(app.request("POST", "/api/v1/agents", json={"name": "audited"}))
    app.request("PATCH", f"/api/v1/agents/{agent['id']}", json={"description": "now described"})
    variable = created(app.request("POST", "/api/v1/variables", json={"name": "SECRET", "value": CANARY_VAR}))
    app.request("PATCH", f"/api/v1/variables/{variable['id']}", json={"value": CANARY_VAR})
    app.request("DELETE", f"/api/v1/agents/{agent['id']}")
    log = app.request("GET", "/api/v1/audit", params={"limit": 100}).json()
    assert log["pagination"]["total"] == before + 5
    entries = log["data"][:5]
    assert [e["action"] for e in entries] == [
        "agent.delete", "variable.update", "variable.create", "agent.update", "agent.create",
    ]
    assert all(e["actor_user_id"] == me["user_id"] and e["actor_token_id"] == me["token"]["id"] for e in entries)
    assert entries[3]["changes"]["description"] == {"before": "", "after": "now described"}
    assert entries[1]["changes"]["value_sealed"] == {"before": "[set]", "after": "[set]"}
    assert CANARY_VAR not in str(log)
    only_agents = app.request("GET", "/api/v1/audit", params={"resource_type": "agent"}).json()["data"]
    assert {e["resource_id"] for e in only_agents} == {agent["id"]}
    by_offset = app.request("GET", "/api/v1/audit", params={"limit": 2, "offset": 1}).json()["data"]
    assert [e["id"] for e in by_offset] == [e["id"] for e in entries[1:3]]


def test_run_statistics(app: Api) -> None:
    app.create_kb("stats")
    for _ in range(3):
        app.request("POST", "/api/v1/assistant/chat", json={"message": "anything?"})
    stats = app.request("GET", "/api/v1/executions/stats").json()["data"]
    assert stats["total"]["runs"] == 3 and stats["total"]["succeeded"] == 3 and stats["total"]["success_rate"] == 1.0
    assert [g["key"] for g in stats["by_model"]] == ["ragline/extractive"]
    assert stats["by_model"][0]["cost_usd"] == 0.0 and stats["total"]["p50_latency_ms"] > 0
    assert len(stats["by_day"]) == 1 and stats["by_status"][0]["key"] == "succeeded"


def test_roles_and_providers_are_listed(app: Api) -> None:
    roles = app.request("GET", "/api/v1/roles").json()["data"]
    assert [r["name"] for r in roles] == ["viewer", "editor", "admin"]
    providers = {p["id"] for p in app.request("GET", "/api/v1/models/providers").json()["data"]}
    assert {"ragline", "openai", "anthropic", "azure"} <= providers


def test_system_models_are_usable_by_every_workspace_without_their_credentials(app: Api, model_server: Server) -> None:
    system = created(app.request("POST", "/api/v1/system-models", json={
        "name": "shared", "model": "openai/scripted", "api_base": model_server.base_url, "api_key": CANARY_KEY,
    }))
    viewer_token = app.request("POST", "/api/v1/tokens", json={"name": "v", "role": "viewer"}).json()["data"]["secret"]
    visible = app.request("GET", "/api/v1/system-models/visible", token=viewer_token).json()["data"]
    assert [(m["name"], m["api_base"], m["has_api_key"]) for m in visible] == [("shared", None, True)]
    agent = created(app.request("POST", "/api/v1/agents", json={"name": "s", "model_config_id": system["id"],
                                                                "tools": []}))
    frames = parse_sse(app.request("POST", f"/api/v1/agents/{agent['id']}/run/stream", json={"input": "hi"}).text)
    assert frames[-1]["data"]["output"] == "Configured answer."


def test_model_parameters_are_checked_when_saved(app: Api, model_server: Server) -> None:
    """A configuration's params have the names, types and bounds a run passes on: a wrong one is refused when it is
    saved (it used to be stored, and every run with it then failed with a 500), and a row stored before that is a
    422 that names it, never a 500."""
    base = {"model": "openai/scripted", "api_base": model_server.base_url, "api_key": CANARY_KEY}
    for params in ({"timeout_s": "soon"}, {"temperature": 7}, {"max_tokens": 0}, {"top_p": "high"}, {"seed": 1}):
        refused = app.request("POST", "/api/v1/models", json={"name": "m", **base, "params": params})
        assert refused.status_code == 422 and "params" in refused.json()["message"], (params, refused.text)
    model = created(app.request("POST", "/api/v1/models", json={"name": "m", **base, "params": {
        "temperature": 0.25, "timeout_s": 30}}))  # fmt: skip
    assert model["params"] == {"temperature": 0.25, "timeout_s": 30}
    assert app.request("PATCH", f"/api/v1/models/{model['id']}", json={"params": {"top_p": "x"}}).status_code == 422
    agent = created(app.request("POST", "/api/v1/agents", json={"name": "a", "model_config_id": model["id"],
                                                                "tools": []}))  # fmt: skip
    frames = parse_sse(app.request("POST", f"/api/v1/agents/{agent['id']}/run/stream", json={"input": "hi"}).text)
    assert frames[-1]["event"] == "done" and model_server.requests[-1]["temperature"] == 0.25

    async def store_unchecked() -> None:
        async with app.services.sessions() as session:
            await session.execute(update(ModelConfig).where(ModelConfig.id == model["id"]).values(
                params={"timeout_s": "soon"}))  # fmt: skip
            await session.commit()

    app.call(store_unchecked)
    run = app.request("POST", f"/api/v1/agents/{agent['id']}/run/stream", json={"input": "hi"})
    assert run.status_code == 422 and model["id"] in run.json()["message"] and "timeout_s" in run.json()["message"]

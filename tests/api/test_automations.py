"""Automations through the real app: an event starts an agent run (against the scripted OpenAI-compatible server)
whose record links the event; conditions; a loop is stopped by the depth limit; definitions are checked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import pytest

from tests.api.conftest import Api, make_settings, open_api
from tests.api.test_events import emit, events, wait_for_event
from tests.helpers.openai_server import Reply, Server, serve

MAX_DEPTH = 2


@pytest.fixture(scope="module")
def model_server() -> Iterator[Server]:
    yield from serve(default=lambda i: Reply(text=f"Handled ({i})."))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, embedder: Any, model_server: Server) -> Iterator[Api]:
    settings = make_settings(
        tmp_path_factory.mktemp("automations") / "data", model_api_base=model_server.base_url,
        model_api_key="sk-scripted", automation_max_depth=MAX_DEPTH,
    )  # fmt: skip
    with open_api(settings, embedder) as api:
        api.call(anyio.to_thread.run_sync, api.services.models.get_model("openai/scripted").warm_up)
        yield api


def new_agent(api: Api, name: str) -> str:
    created = api.request("POST", "/api/v1/agents", json={"name": name, "model": "openai/scripted", "tools": []})
    assert created.status_code == 201, created.text
    return str(created.json()["data"]["id"])


def new_automation(api: Api, **fields: Any) -> dict[str, Any]:
    created = api.request("POST", "/api/v1/automations", json=fields)
    assert created.status_code == 201, created.text
    return dict(created.json()["data"])


def runs_of(api: Api, agent_id: str) -> list[dict[str, Any]]:
    response = api.request("GET", "/api/v1/executions", params={"agent_id": agent_id, "limit": 100})
    return list(response.json()["data"])


def wait_for(predicate: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_an_event_starts_an_agent_run_that_records_the_event(app: Api, model_server: Server) -> None:
    agent = new_agent(app, "invoice-clerk")
    rule = new_automation(
        app, name="big invoices", event_types=["invoice.*"], action="agent", agent_id=agent,
        condition="input.payload.amount > 100 and input.type == 'invoice.paid'",
        input_template="Thank {{ input.payload.customer }} for paying {{ input.payload.amount }}.",
    )  # fmt: skip
    small = emit(app, "invoice.paid", {"amount": 50, "customer": "small llama"})
    big = emit(app, "invoice.paid", {"amount": 120, "customer": "llama co"})
    run = wait_for(lambda: [r for r in runs_of(app, agent) if r["status"] != "running"])[0]
    assert run["event_id"] == big["id"] and run["event_depth"] == 1
    assert run["input"] == "Thank llama co for paying 120." and run["status"] == "succeeded"
    assert run["user_id"] == f"automation:{rule['id']}"
    assert any("Thank llama co" in str(body) for body in model_server.requests)
    time.sleep(0.5)  # the small invoice's event was handled first: it started nothing
    assert [r["event_id"] for r in runs_of(app, agent)] == [big["id"]] and small["id"] != big["id"]
    stored = app.request("GET", f"/api/v1/automations/{rule['id']}").json()["data"]
    assert stored["fired"] == 1 and stored["last_error"] is None
    # the run's own events carry its depth and link back to it
    finished = wait_for_event(app, "run.finished", lambda e: e["payload"]["run_id"] == run["id"])
    assert finished["depth"] == 1 and finished["payload"]["event_id"] == big["id"]


def test_a_loop_is_stopped_by_the_depth_limit(app: Api) -> None:
    agent = new_agent(app, "echo")
    rule = new_automation(
        app, name="again and again", event_types=["run.finished"], action="agent", agent_id=agent,
        condition=f"input.payload.agent_id == '{agent}'", input_template="again: {{ input.payload.output }}",
    )  # fmt: skip
    first = app.request("POST", f"/api/v1/agents/{agent}/run", json={"input": "start"})
    assert first.status_code == 202, first.text
    stopped = wait_for_event(app, "automation.loop_stopped", lambda e: e["payload"]["automation_id"] == rule["id"])
    assert stopped["payload"]["depth"] == MAX_DEPTH and stopped["payload"]["max_depth"] == MAX_DEPTH
    time.sleep(1.0)  # nothing more starts after the stop
    runs = runs_of(app, agent)
    assert sorted(r["event_depth"] for r in runs) == list(range(MAX_DEPTH + 1))  # the first run, then MAX_DEPTH
    assert all(r["status"] != "running" for r in runs)
    chained = [r for r in runs if r["event_id"]]
    assert len(chained) == MAX_DEPTH and all(r["input"].startswith("again: Handled") for r in chained)
    assert app.request("GET", f"/api/v1/automations/{rule['id']}").json()["data"]["fired"] == MAX_DEPTH


def test_a_disabled_automation_starts_nothing_and_a_refused_start_is_reported(app: Api) -> None:
    agent = new_agent(app, "sleepy")
    rule = new_automation(app, name="off", event_types=["nap.time"], action="agent", agent_id=agent, enabled=False)
    emit(app, "nap.time")
    time.sleep(0.5)
    assert runs_of(app, agent) == []
    assert app.request("PATCH", f"/api/v1/agents/{agent}", json={"status": "inactive"}).status_code == 200
    assert app.request("PATCH", f"/api/v1/automations/{rule['id']}", json={"enabled": True}).status_code == 200
    event = emit(app, "nap.time")
    failed = wait_for_event(app, "automation.failed", lambda e: e["payload"]["event_id"] == event["id"])
    assert "inactive" in failed["payload"]["error"] and runs_of(app, agent) == []


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"event_types": ["Bad Type"]}, "pattern"),
        ({"event_types": []}, "event_types"),
        ({"condition": "input.payload.amount >"}, "condition"),
        ({"condition": "__import__('os')"}, "condition"),
        ({"agent_id": "agent_missing"}, "agent"),
        ({"input_template": "{{ input.payload. }}"}, "input_template"),
    ],
)
def test_broken_definitions_are_refused_with_the_reason(app: Api, fields: dict[str, Any], says: str) -> None:
    agent = new_agent(app, f"checked-{says}-{len(str(fields))}")
    body = {"name": f"broken {fields}", "event_types": ["x.y"], "action": "agent", "agent_id": agent, **fields}
    response = app.request("POST", "/api/v1/automations", json=body)
    assert response.status_code in (400, 422), response.text
    assert says in response.json()["message"], response.text


def test_crud(app: Api) -> None:
    agent = new_agent(app, "crud-agent")
    rule = new_automation(app, name="crud", event_types=["a.*"], action="agent", agent_id=agent)
    assert rule["input_template"] == "{{ input.payload }}" and rule["condition"] is None
    duplicate = app.request("POST", "/api/v1/automations",
                            json={"name": "crud", "event_types": ["a.*"], "action": "agent", "agent_id": agent})
    assert duplicate.status_code == 409
    changed = app.request("PATCH", f"/api/v1/automations/{rule['id']}", json={"condition": "input.payload.ok"})
    assert changed.status_code == 200 and changed.json()["data"]["condition"] == "input.payload.ok"
    assert rule["id"] in str(app.request("GET", "/api/v1/automations").json()["data"])
    assert app.request("DELETE", f"/api/v1/automations/{rule['id']}").status_code == 200
    assert app.request("GET", f"/api/v1/automations/{rule['id']}").status_code == 404
    audit = app.request("GET", "/api/v1/audit", params={"action": "automation."}).json()["data"]
    assert {a["action"] for a in audit} >= {"automation.create", "automation.update", "automation.delete"}
    assert events(app, type="automation.*")["pagination"]["total"] >= 0


def test_an_event_starts_a_workflow_with_an_input_mapped_from_it(app: Api) -> None:
    definition = {"steps": [{"id": "t", "kind": "transform", "template": {"n": "{{ input.n }}"}}]}
    made = app.request("POST", "/api/v1/workflows", json={"name": "count", "definition": definition})
    assert made.status_code == 201, made.text
    workflow = made.json()["data"]["id"]
    new_automation(app, name="count parcels", event_types=["parcel.*"], action="workflow", workflow_id=workflow,
                   input_mapping={"n": "{{ input.payload.count }}"})  # fmt: skip
    event = emit(app, "parcel.counted", {"count": 7})

    def started() -> list[dict[str, Any]]:
        runs = app.request("GET", "/api/v1/executions", params={"limit": 100}).json()["data"]
        return [r for r in runs if r["event_id"] == event["id"] and r["status"] != "running"]

    run = wait_for(started)[0]
    assert run["kind"] == "workflow" and run["workflow_id"] == workflow and run["event_depth"] == 1
    assert run["status"] == "succeeded", run
    missing = app.request("POST", "/api/v1/automations", json={
        "name": "nowhere", "event_types": ["x.y"], "action": "workflow", "workflow_id": "wf_missing"})  # fmt: skip
    assert missing.status_code == 422 and "workflow" in missing.json()["message"]

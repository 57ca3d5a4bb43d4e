"""The workspace event log through the real app: emit, query (types with wildcards, source, time, cursor paging),
audit, reserved types, and Ragline's own events (file ready/failed, run started/finished, prompt published, token
revoked)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import Api, make_settings, open_api
from tests.api.test_tokens import issue_user


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Api]:
    with open_api(make_settings(tmp_path_factory.mktemp("events") / "data"), embedder) as api:
        yield api


def emit(api: Api, type: str, payload: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
    response = api.request("POST", "/api/v1/events", json={"type": type, "payload": payload or {}}, token=token)
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def events(api: Api, token: str | None = None, **params: Any) -> dict[str, Any]:
    response = api.request("GET", "/api/v1/events", params=params, token=token)
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for_event(api: Api, type: str, predicate: Any = lambda e: True, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [e for e in events(api, type=type, limit=100)["data"] if predicate(e)]
        if found:
            return dict(found[0])
        time.sleep(0.1)
    raise AssertionError(f"no {type} event in {timeout_s} s")


def test_emitted_events_are_stored_in_order_and_queried_by_type_source_and_cursor(app: Api) -> None:
    first = emit(app, "invoice.paid", {"amount": 120, "customer": "llama co"})
    second = emit(app, "invoice.refunded", {"amount": 20})
    third = emit(app, "shipment.sent", {"parcel": 7})
    assert first["id"] < second["id"] < third["id"], "ids sort in emit order"
    assert first["source"] == "api" and first["depth"] == 0 and first["ts"].endswith("Z")

    newest_first = events(app, type="invoice.*")
    assert [e["id"] for e in newest_first["data"]][:2] == [second["id"], first["id"]]
    both = events(app, type="invoice.paid,shipment.*")
    assert {e["type"] for e in both["data"]} >= {"invoice.paid", "shipment.sent"}
    assert "invoice.refunded" not in {e["type"] for e in both["data"]}
    assert all(e["source"] == "api" for e in events(app, source="api")["data"])

    # cursor paging: ascending from an id, one page at a time, next_cursor continues it
    page = events(app, after=first["id"], limit=1, type="invoice.*,shipment.*")
    assert [e["id"] for e in page["data"]] == [second["id"]] and page["next_cursor"] == second["id"]
    rest = events(app, after=page["next_cursor"], limit=10, type="invoice.*,shipment.*")
    assert [e["id"] for e in rest["data"]] == [third["id"]] and rest["next_cursor"] is None
    older = events(app, before=third["id"], limit=1, type="invoice.*,shipment.*")
    assert [e["id"] for e in older["data"]] == [second["id"]]

    # time range
    later = events(app, since=third["ts"], type="invoice.*,shipment.*")
    assert [e["id"] for e in later["data"]] == [third["id"]]
    assert events(app, until=first["ts"], type="invoice.*,shipment.*")["data"] == []


def test_a_members_emit_is_audited(app: Api) -> None:
    emitted = emit(app, "audit.check", {"n": 1})
    audit = app.request("GET", "/api/v1/audit", params={"action": "event."}).json()["data"]
    assert any(a["resource_id"] == emitted["id"] and a["action"] == "event.create" for a in audit), audit


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"type": "file.ready", "payload": {}}, 422),  # Ragline's own first words are reserved
        ({"type": "run.finished"}, 422),
        ({"type": "token.revoked"}, 422),
        ({"type": "Invoice Paid"}, 422),
        ({"type": "invoice..paid"}, 422),
        ({"type": "invoice.paid", "payload": {"blob": "x" * 70_000}}, 422),
        ({"type": "invoice.paid", "payload": [1, 2]}, 422),
        ({"type": "invoice.paid", "extra": 1}, 422),
        ({}, 422),
    ],
)
def test_malformed_or_reserved_events_are_refused(app: Api, body: dict[str, Any], status: int) -> None:
    response = app.request("POST", "/api/v1/events", json=body)
    assert response.status_code == status, response.text
    assert response.json()["data"] is None


@pytest.mark.parametrize("params", [{"after": "nope"}, {"type": "a.*.c"}, {"type": "BAD"}])
def test_malformed_queries_are_refused(app: Api, params: dict[str, str]) -> None:
    response = app.request("GET", "/api/v1/events", params=params)
    assert 400 <= response.status_code < 500, response.text


def test_another_workspaces_events_are_never_listed(app: Api) -> None:
    ours = emit(app, "secret.plan", {"code": "llama-42"})
    outsider = issue_user(app, "elsewhere", "outsider", "admin")
    theirs = events(app, token=outsider, limit=100)
    assert ours["id"] not in str(theirs) and "llama-42" not in str(theirs)
    emit(app, "their.thing", token=outsider)
    assert all(e["type"] != "their.thing" for e in events(app, limit=100)["data"])


def test_a_file_becoming_ready_or_failed_is_an_event(app: Api) -> None:
    kb = app.create_kb("events-kb")
    ready = app.upload(kb, "notes.txt", b"Alpacas hum when they are content.").json()["data"]["id"]
    failed = app.upload(kb, "empty.txt", b"   \n\n  ").json()["data"]
    event = wait_for_event(app, "file.ready", lambda e: e["payload"]["file_id"] == ready)
    assert event["payload"]["kb_id"] == kb and event["payload"]["name"] == "notes.txt"
    assert event["source"] == "system" and event["payload"]["chunks"] >= 1
    if failed.get("status") != "failed":  # refused at upload needs no event; a failed ingest has one
        bad = wait_for_event(app, "file.failed", lambda e: e["payload"]["file_id"] == failed["id"])
        assert bad["payload"]["error"]


def test_a_run_starting_and_finishing_are_events_linked_to_the_run(app: Api) -> None:
    agent = app.request("POST", "/api/v1/agents", json={"name": "event-agent"}).json()["data"]["id"]
    started = app.request("POST", f"/api/v1/agents/{agent}/run", json={"input": "alpacas"})
    assert started.status_code == 202, started.text
    run_id = started.json()["data"]["run_id"]
    finished = wait_for_event(app, "run.finished", lambda e: e["payload"]["run_id"] == run_id)
    began = wait_for_event(app, "run.started", lambda e: e["payload"]["run_id"] == run_id)
    assert began["id"] < finished["id"]
    assert finished["run_id"] == run_id and finished["source"] == f"run:{run_id}"
    record = app.request("GET", f"/api/v1/executions/{run_id}").json()["data"]
    assert finished["payload"]["status"] == record["status"] and finished["payload"]["agent_id"] == agent
    both = events(app, type="run.*", source=f"run:{run_id}")["data"]
    assert {e["type"] for e in both} == {"run.started", "run.finished"}


def test_chat_runs_emit_no_events(app: Api) -> None:
    asked = app.request("POST", "/api/v1/assistant/messages", json={"message": "private question"})
    run_id = asked.json()["data"]["run_id"]
    assert app.request("GET", f"/api/v1/executions/{run_id}/stream").status_code == 200  # ends with the run
    time.sleep(0.5)
    assert run_id not in str(events(app, type="run.*", limit=100))


def test_publishing_a_prompt_and_revoking_a_token_are_events(app: Api) -> None:
    prompt = app.request("POST", "/api/v1/prompts", json={
        "key": "greeting", "messages": [{"role": "user", "content": "Hello"}]}).json()["data"]["id"]  # fmt: skip
    assert app.request("POST", f"/api/v1/prompts/{prompt}/publish", json={"note": "v1"}).status_code == 201
    published = wait_for_event(app, "prompt.published", lambda e: e["payload"]["id"] == prompt)
    assert published["source"] == "system" and published["payload"]["user_id"]

    token = app.request("POST", "/api/v1/tokens", json={"name": "short-lived"}).json()["data"]["id"]
    assert app.request("POST", f"/api/v1/tokens/{token}/revoke").status_code in (200, 201)
    revoked = wait_for_event(app, "token.revoked", lambda e: e["payload"]["id"] == token)
    assert "secret" not in str(revoked).lower() or "[set]" in str(revoked)

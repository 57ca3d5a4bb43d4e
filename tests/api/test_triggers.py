"""Triggers through the real app: signed webhooks, manual execute, schedules, signed callbacks.

Callbacks go to a real HTTP receiver on 127.0.0.1, which the SSRF guard blocks by design: the app
here is configured with the operator setting ``callback_allow_networks=("127.0.0.1/32",)``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio.to_thread
import msgspec
import pytest

from engine import webhooks
from tests.api.conftest import Api, make_settings, open_api
from tests.api.test_chat_and_runs import parse_sse
from tests.helpers.openai_server import Reply, Server, serve


@dataclass
class Receiver:
    """A webhook receiver: records every request, answers with the scripted statuses (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def model_server() -> Iterator[Server]:
    """Scripted model: every answer stalls (for the overlap test); the extractive model needs none."""
    yield from serve(default=lambda i: Reply(text="slow", stall_after_chunks=1))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, embedder: Any, model_server: Server) -> Iterator[Api]:
    settings = make_settings(
        tmp_path_factory.mktemp("triggers") / "data", callback_allow_networks=("127.0.0.1/32",),
        callback_retry_base_s=0.3, callback_max_attempts=3,
        model_api_base=model_server.base_url, model_api_key="sk-scripted",
    )
    with open_api(settings, embedder) as api:
        # litellm's first import takes seconds; pay it here, not inside the timing assertions
        api.call(anyio.to_thread.run_sync, api.services.models.get_model("openai/scripted").warm_up)
        yield api


def ts(value: str) -> float:
    """An ISO-8601 time from the API as Unix seconds."""
    return datetime.fromisoformat(value).timestamp()


def new_agent(api: Api, **fields: Any) -> str:
    created = api.request("POST", "/api/v1/agents", json={"name": "on-call", "max_steps": 2, **fields})
    assert created.status_code == 201, created.text
    return str(created.json()["data"]["id"])


def new_trigger(api: Api, **fields: Any) -> dict[str, Any]:
    created = api.request("POST", "/api/v1/triggers", json=fields)
    assert created.status_code == 201, created.text
    return dict(created.json()["data"])


def trigger_runs(api: Api, trigger_id: str) -> list[dict[str, Any]]:
    runs = api.request("GET", "/api/v1/executions?kind=trigger&limit=100").json()["data"]
    return [r for r in runs if r["trigger_id"] == trigger_id]


def wait_for(predicate: Any, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def post_webhook(api: Api, url: str, body: bytes, headers: dict[str, str]) -> Any:
    return api.client.post(url, content=body, headers={"Content-Type": "application/json", **headers})


def test_signed_webhook_starts_exactly_one_run_and_bad_signatures_none(app: Api) -> None:
    trigger = new_trigger(app, name="tickets", agent_id=new_agent(app), type="webhook",
                          input_template="New ticket: {body.title} ({body.tags.0}) {{raw}}")
    secret, url = trigger["webhook_secret"], trigger["webhook_url"]
    assert secret.startswith("whsec_") and url.startswith("/api/webhook/")
    assert "webhook_secret" not in app.request("GET", f"/api/v1/triggers/{trigger['id']}").json()["data"]
    body = json.dumps({"title": "printer on fire", "tags": ["urgent"]}).encode()
    stale = int(time.time()) - 6 * 60
    refused = {
        "missing": {},
        "wrong secret": webhooks.sign_headers(webhooks.new_secret(), "msg_1", body),
        "stale": webhooks.sign_headers(secret, "msg_1", body, timestamp=stale),
        "future": webhooks.sign_headers(secret, "msg_1", body, timestamp=int(time.time()) + 6 * 60),
        "other body": webhooks.sign_headers(secret, "msg_1", body + b" "),
        "no signature": {k: v for k, v in webhooks.sign_headers(secret, "msg_1", body).items()
                         if k != webhooks.SIGNATURE_HEADER},
    }
    for case, headers in refused.items():
        response = post_webhook(app, url, body, headers)
        assert response.status_code == 401, (case, response.text)
        assert response.json()["data"] is None and response.json()["code"] == "invalid_signature"
    assert post_webhook(app, "/api/webhook/no-such-path", body, webhooks.sign_headers(secret, "m", body)
                        ).status_code == 404
    assert trigger_runs(app, trigger["id"]) == []

    signed = {**webhooks.sign_headers(secret, "msg_1", body), "Idempotency-Key": "ticket-42"}
    first = post_webhook(app, url, body, signed)
    assert first.status_code == 202, first.text
    run_id = first.json()["data"]["run_id"]
    replayed = post_webhook(app, url, body, signed)  # the same delivery again
    assert replayed.status_code == 200 and replayed.json()["data"] == {
        "run_id": run_id, "execution_id": run_id, "duplicate": True}
    resent = {**webhooks.sign_headers(secret, "msg_2", body), "Idempotency-Key": "ticket-42"}
    assert post_webhook(app, url, body, resent).json()["data"]["run_id"] == run_id  # same idempotency key

    runs = trigger_runs(app, trigger["id"])
    assert [r["id"] for r in runs] == [run_id]
    assert runs[0]["kind"] == "trigger" and runs[0]["input"] == "New ticket: printer on fire (urgent) {raw}"
    record = app.call(app.services.run_manager.wait, run_id)
    assert record.status == "succeeded" and record.agent_id == trigger["agent_id"]

    disabled = app.request("PATCH", f"/api/v1/triggers/{trigger['id']}", json={"enabled": False})
    assert disabled.status_code == 200
    fresh = webhooks.sign_headers(secret, "msg_3", body)
    assert post_webhook(app, url, body, fresh).status_code == 404
    rotated = app.request("POST", f"/api/v1/triggers/{trigger['id']}/rotate-secret?kind=webhook").json()["data"]
    assert rotated["webhook_secret"] != secret
    assert len(trigger_runs(app, trigger["id"])) == 1


def test_remembered_delivery_ids_expire_after_a_day(app: Api) -> None:
    trigger = new_trigger(app, name="expiring", agent_id=new_agent(app), type="webhook", input_template="{raw}")
    secret, url = trigger["webhook_secret"], trigger["webhook_url"]
    body = b'{"n": 1}'
    first = post_webhook(app, url, body, webhooks.sign_headers(secret, "evt_old", body))
    assert first.status_code == 202
    with app.client.portal() as portal:  # as if the delivery had arrived 25 hours ago
        portal.call(_age_deliveries, app.services.sessions, trigger["id"], 25 * 3600)
    recent = post_webhook(app, url, body, webhooks.sign_headers(secret, "evt_new", body))
    assert recent.status_code == 202
    assert post_webhook(app, url, body, webhooks.sign_headers(secret, "evt_new", body)).json()["data"]["duplicate"]
    with app.client.portal() as portal:
        kept = portal.call(_delivery_ids, app.services.sessions, trigger["id"])
    assert kept == ["evt_new"]  # the day-old id was dropped when the next delivery came in
    assert len(trigger_runs(app, trigger["id"])) == 2


async def _age_deliveries(sessions: Any, trigger_id: str, seconds: float) -> None:
    from sqlalchemy import update

    from engine.db.models import WebhookDelivery

    async with sessions() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.trigger_id == trigger_id)
            .values(received_at=WebhookDelivery.received_at - seconds)
        )
        await session.commit()


async def _delivery_ids(sessions: Any, trigger_id: str) -> list[str]:
    from sqlalchemy import select

    from engine.db.models import WebhookDelivery

    async with sessions() as session:
        query = select(WebhookDelivery.delivery_id).where(WebhookDelivery.trigger_id == trigger_id)
        return sorted(await session.scalars(query))


def executions_total(api: Api) -> int:
    return int(api.request("GET", "/api/v1/executions?limit=1").json()["pagination"]["total"])


def test_signed_deliveries_whose_body_is_not_a_json_document_are_refused(app: Api) -> None:
    trigger = new_trigger(app, name="strict", agent_id=new_agent(app), type="webhook", input_template="{raw}")
    secret, url = trigger["webhook_secret"], trigger["webhook_url"]
    before = executions_total(app)
    bodies = [b"garbage", b'{"a":', b"", b"   ", b"42", b'"just a string"', b"null", b"true",
              b'{"a": 1} trailing', b'{"a": "\xff"}', b'{"a": "nul \\u0000"}', b"[" * 100_000]
    for n, body in enumerate(bodies):
        response = post_webhook(app, url, body, webhooks.sign_headers(secret, f"evt_bad_{n}", body))
        assert response.status_code == 400, (body[:40], response.status_code, response.text[:300])
        refused = response.json()
        assert refused["data"] is None and refused["code"] == "invalid_body" and refused["message"], refused
    assert trigger_runs(app, trigger["id"]) == [] and executions_total(app) == before

    # the refused delivery's id was not used up: the sender's corrected resend (same id) starts the run
    fixed = b'{"a": 1}'
    resent = post_webhook(app, url, fixed, webhooks.sign_headers(secret, "evt_bad_0", fixed))
    assert resent.status_code == 202, resent.text
    assert len(trigger_runs(app, trigger["id"])) == 1 and executions_total(app) == before + 1
    for n, body in enumerate([b"[]", b"{}", b'[{"a": "caf\\u00e9"}]']):  # arrays and objects, empty too
        accepted = post_webhook(app, url, body, webhooks.sign_headers(secret, f"evt_ok_{n}", body))
        assert accepted.status_code == 202, (body, accepted.text)


def test_webhook_deliveries_are_rate_limited_per_path(tmp_path: Path, embedder: Any) -> None:
    settings = make_settings(tmp_path / "data", webhook_rate_per_minute=2)
    with open_api(settings, embedder) as api:
        trigger = new_trigger(api, name="flood", agent_id=new_agent(api), type="webhook")
        secret, url = trigger["webhook_secret"], trigger["webhook_url"]
        # a stranger's unsigned deliveries: 401 while their own budget lasts, then 429
        statuses = [post_webhook(api, url, b"{}", {}).status_code for _ in range(4)]
        assert statuses[:2] == [401, 401] and statuses[2:] == [429, 429]
        limited = post_webhook(api, url, b"{}", {})
        assert int(limited.headers["Retry-After"]) >= 1 and trigger_runs(api, trigger["id"]) == []
        # ... which is not the sender's: signed deliveries still have the trigger's whole budget
        signed = [post_webhook(api, url, b"{}", webhooks.sign_headers(secret, f"m{i}", b"{}")) for i in range(3)]
        assert [r.status_code for r in signed] == [202, 202, 429], [r.text for r in signed]
        assert signed[2].json()["code"] == "rate_limited" and int(signed[2].headers["Retry-After"]) >= 1
        assert len(trigger_runs(api, trigger["id"])) == 2


def test_a_flood_of_unsigned_deliveries_never_locks_out_the_signed_sender(app: Api) -> None:
    trigger = new_trigger(app, name="flooded", agent_id=new_agent(app), type="webhook")
    secret, url = trigger["webhook_secret"], trigger["webhook_url"]
    forged = webhooks.sign_headers(webhooks.new_secret(), "evt_forged", b"{}")
    statuses = [post_webhook(app, url, b"{}", {} if i % 2 else forged).status_code for i in range(200)]
    # a stranger sees 401 while their budget (per trigger and client address) lasts, then 429
    assert set(statuses) == {401, 429} and statuses.index(429) == statuses.count(401), statuses
    assert statuses.count(401) == app.services.settings.webhook_rate_per_minute
    body = b'{"title": "real"}'
    accepted = post_webhook(app, url, body, webhooks.sign_headers(secret, "evt_real", body))
    assert accepted.status_code == 202, accepted.text
    assert [r["id"] for r in trigger_runs(app, trigger["id"])] == [accepted.json()["data"]["run_id"]]


def test_refused_deliveries_are_throttled_per_client_address(app: Api) -> None:
    from engine.errors import RateLimited

    trigger = new_trigger(app, name="addresses", agent_id=new_agent(app), type="webhook")
    path = trigger["webhook_url"].rsplit("/", 1)[1]
    receive = app.services.triggers.receive_webhook

    def attempt(address: str) -> str:
        try:
            app.call(lambda: receive(path, {}, b"{}", address=address))
        except webhooks.WebhookVerificationError:
            return "401"
        except RateLimited:
            return "429"
        return "accepted"

    budget = app.services.settings.webhook_rate_per_minute
    assert [attempt("203.0.113.7") for _ in range(budget + 1)] == ["401"] * budget + ["429"]
    assert attempt("198.51.100.9") == "401"  # another address has its own budget


def test_manual_execute_streams_and_callback_is_signed_retried_and_logged(app: Api, receiver: Receiver) -> None:
    receiver.statuses[:] = [500]  # the first attempt fails, the retry succeeds
    trigger = new_trigger(app, name="by hand", agent_id=new_agent(app), type="manual",
                          input_template="{input}", callback_url=receiver.url)
    started = app.request("POST", f"/api/v1/triggers/{trigger['id']}/execute", json={"input": "daily summary"})
    assert started.status_code == 202, started.text
    run_id = started.json()["data"]["run_id"]
    frames = parse_sse(app.request("GET", f"/api/v1/executions/{run_id}/stream").text)
    assert frames[0]["event"] == "execution" and frames[-1]["event"] == "done"
    record = app.request("GET", f"/api/v1/executions/{run_id}").json()["data"]
    assert record["kind"] == "trigger" and record["trigger_id"] == trigger["id"] and record["input"] == "daily summary"

    def delivered() -> dict[str, Any] | None:
        rows = app.request("GET", f"/api/v1/triggers/{trigger['id']}/deliveries").json()["data"]
        return rows[0] if rows and rows[0]["status"] == "delivered" else None

    delivery = wait_for(delivered)
    assert delivery["attempts"] == 2 and [e["status_code"] for e in delivery["log"]] == [500, 200]
    assert delivery["log"][0]["error"] == "HTTP 500" and delivery["run_id"] == run_id
    assert app.request("GET", f"/api/v1/executions/{run_id}/callbacks").json()["data"][0]["id"] == delivery["id"]
    attempts = [(h, b) for h, b in receiver.received if h.get("webhook-id") == delivery["id"]]
    assert len(attempts) == 2
    for headers, body in attempts:  # each attempt verifies with the trigger's callback secret
        assert webhooks.verify(trigger["callback_secret"], headers, body) == delivery["id"]
    event = json.loads(attempts[-1][1])
    assert event["type"] == "run.finished" and event["data"]["run_id"] == run_id
    assert event["data"]["status"] == "succeeded" and event["data"]["output"] == frames[-1]["data"]["output"]
    assert event["data"]["token_usage"]["total"] == record["total_tokens"] and event["data"]["latency_ms"] > 0
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(webhooks.new_secret(), attempts[-1][0], attempts[-1][1])


def test_callback_gives_up_after_the_attempt_limit(app: Api, receiver: Receiver) -> None:
    receiver.statuses[:] = [503] * 10
    trigger = new_trigger(app, name="down", agent_id=new_agent(app), type="manual", callback_url=receiver.url)
    run_id = app.request("POST", f"/api/v1/triggers/{trigger['id']}/execute", json={"input": "x"}).json()["data"]
    app.call(app.services.run_manager.wait, run_id["run_id"])
    try:
        row = wait_for(lambda: next((d for d in app.request(
            "GET", f"/api/v1/triggers/{trigger['id']}/deliveries").json()["data"] if d["status"] == "failed"), None))
    finally:
        receiver.statuses.clear()
    assert row["attempts"] == 3 and [e["status_code"] for e in row["log"]] == [503, 503, 503]
    gaps = [ts(b["at"]) - ts(a["at"]) for a, b in zip(row["log"], row["log"][1:], strict=False)]
    assert gaps[1] > gaps[0] >= 0.25  # exponential backoff: 0.3 s, then 0.6 s


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest", "http://10.0.0.7/hook", "http://[::1]:9/x",
                                 "http://127.0.0.2:9/x", "http://2130706434/x", "ftp://example.com/x"])
def test_callback_urls_are_refused_by_the_ssrf_guard_at_save(app: Api, url: str) -> None:
    agent_id = new_agent(app)
    created = app.request("POST", "/api/v1/triggers", json={"name": "x", "agent_id": agent_id, "type": "manual",
                                                            "callback_url": url})
    assert created.status_code == 422 and created.json()["code"] == "blocked_destination", created.text
    ok = new_trigger(app, name="x", agent_id=agent_id, type="manual")
    patched = app.request("PATCH", f"/api/v1/triggers/{ok['id']}", json={"callback_url": url})
    assert patched.status_code == 422


def test_invalid_definitions_are_refused(app: Api) -> None:
    agent_id = new_agent(app)
    bad = [
        {"type": "schedule"},  # no cron
        {"type": "schedule", "cron": "not a cron"},
        {"type": "schedule", "cron": "0 0 31 2 *"},  # never fires
        {"type": "schedule", "cron": "* * * * *", "timezone": "Mars/Olympus"},
        {"type": "manual", "input_template": "{body.__class__"},
        {"type": "manual", "input_template": "{0.__class__}"},
        {"type": "manual", "agent_id": "agt_000000000000000000000000"},
    ]
    for fields in bad:
        response = app.request("POST", "/api/v1/triggers", json={"name": "x", "agent_id": agent_id, **fields})
        assert response.status_code == 422, (fields, response.text)


def test_schedule_fires_on_time_and_skips_while_the_previous_run_is_still_going(app: Api) -> None:
    # the scripted model stalls every answer, so a run lasts until it is cancelled
    slow = new_agent(app, model="openai/scripted", tools=[], timeout_s=60)
    trigger = new_trigger(app, name="every second", agent_id=slow, type="schedule", cron="* * * * * *",
                          timezone="Europe/Berlin", input_template="tick at {time}")
    assert ts(trigger["next_fire_at"]) - time.time() <= 1.01
    first = wait_for(lambda: trigger_runs(app, trigger["id"]), timeout_s=5)[0]
    fired = app.request("GET", f"/api/v1/triggers/{trigger['id']}").json()["data"]
    # on time: never early; late by at most a loop wake-up on a busy 2-core machine (0.58 s seen under load)
    assert 0 <= ts(fired["last_fired_at"]) - ts(trigger["next_fire_at"]) < 1.5
    assert abs(ts(first["started_at"]) - ts(fired["last_fired_at"])) < 1.5
    assert first["input"].startswith("tick at ") and first["input"].endswith("+01:00")
    time.sleep(max(0.0, ts(first["started_at"]) + 2.6 - time.time()))  # two more periods fall due meanwhile
    during = app.request("GET", f"/api/v1/triggers/{trigger['id']}").json()["data"]
    assert [r["id"] for r in trigger_runs(app, trigger["id"])] == [first["id"]]  # those fires were skipped
    assert ts(during["next_fire_at"]) >= ts(trigger["next_fire_at"]) + 3
    assert during["last_fired_at"] == fired["last_fired_at"]
    assert app.request("POST", f"/api/v1/executions/{first['id']}/cancel").json()["data"]["cancelled"] is True
    later = wait_for(lambda: [r for r in trigger_runs(app, trigger["id"]) if r["id"] != first["id"]], timeout_s=4)
    assert ts(later[0]["started_at"]) > ts(first["started_at"]) + 2.5  # it fires again once the run has ended
    paused = app.request("PATCH", f"/api/v1/triggers/{trigger['id']}", json={"enabled": False}).json()["data"]
    assert paused["next_fire_at"] is None
    app.request("POST", f"/api/v1/executions/{later[0]['id']}/cancel")


def test_pending_callbacks_resume_after_a_restart(tmp_path: Path, embedder: Any, receiver: Receiver) -> None:
    # first process: the receiver is down (503) and the next retry is far away when the app stops
    settings = make_settings(tmp_path / "data", callback_allow_networks=("127.0.0.1/32",),
                             callback_retry_base_s=3600)
    receiver.statuses[:] = [503]
    with open_api(settings, embedder) as api:
        trigger = new_trigger(api, name="resume", agent_id=new_agent(api), type="manual", callback_url=receiver.url)
        run_id = api.request("POST", f"/api/v1/triggers/{trigger['id']}/execute", json={}).json()["data"]["run_id"]
        api.call(api.services.run_manager.wait, run_id)
        pending = wait_for(lambda: [d for d in api.request("GET", f"/api/v1/executions/{run_id}/callbacks").json()
                                    ["data"] if d["attempts"] == 1])[0]
        assert pending["status"] == "pending"
        assert 0.9 * 3600 - 60 < ts(pending["next_attempt_at"]) - time.time() < 1.1 * 3600  # an hour, +-10 % jitter
    # second process on the same data: the pending delivery is retried (now due) and delivered
    with open_api(msgspec.structs.replace(settings, callback_retry_base_s=0.1), embedder) as api:
        with api.client.portal() as portal:  # make it due now, as if the hour had passed while down
            portal.call(_make_due, api.services.sessions, pending["id"])
            portal.call(api.services.callbacks.wake)
        done = wait_for(lambda: next((d for d in api.request("GET", f"/api/v1/executions/{run_id}/callbacks")
                                      .json()["data"] if d["status"] == "delivered"), None))
    assert done["id"] == pending["id"] and [e["status_code"] for e in done["log"]] == [503, 200]
    assert sum(1 for h, _ in receiver.received if h.get("webhook-id") == pending["id"]) == 2


async def _make_due(sessions: Any, delivery_id: str) -> None:
    from engine.db.models import CallbackDelivery

    async with sessions() as session:
        row = await session.get(CallbackDelivery, delivery_id)
        row.next_attempt_at = time.time()
        await session.commit()

"""Subscriptions through the real app: a receiver on 127.0.0.1 gets each matching event signed Standard-Webhooks
style (verified with the ``standardwebhooks`` reference library); a failing receiver gets retries with backoff,
all of them in the delivery log; the SSRF guard refuses private destinations at save time.

The receiver is on loopback, which the SSRF guard blocks by design: the app is configured with the operator
setting ``callback_allow_networks=("127.0.0.1/32",)`` (subscriptions share it with run callbacks).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.api.conftest import Api, make_settings, open_api
from tests.api.test_events import emit

RETRY_BASE_S = 0.3


@dataclass
class Receiver:
    """Answers with the scripted statuses (then 200); keeps what it verified and what it refused."""

    secret: str = ""
    statuses: list[int] = field(default_factory=list)
    verified: list[tuple[float, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                try:
                    payload = Webhook(state.secret).verify(body, headers)
                    state.verified.append((time.monotonic(), headers, payload))
                    status = state.statuses.pop(0) if state.statuses else 200
                except WebhookVerificationError as exc:
                    state.refused.append(str(exc))
                    status = 401
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
def app(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Api]:
    settings = make_settings(
        tmp_path_factory.mktemp("subscriptions") / "data", callback_allow_networks=("127.0.0.1/32",),
        callback_retry_base_s=RETRY_BASE_S, callback_max_attempts=3,
    )  # fmt: skip
    with open_api(settings, embedder) as api:
        yield api


def subscribe(api: Api, receiver: Receiver, **fields: Any) -> dict[str, Any]:
    created = api.request("POST", "/api/v1/subscriptions", json={"name": "hook", "url": receiver.url, **fields})
    assert created.status_code == 201, created.text
    data = dict(created.json()["data"])
    receiver.secret = data["secret"]
    return data


def deliveries(api: Api, subscription_id: str) -> list[dict[str, Any]]:
    response = api.request("GET", f"/api/v1/subscriptions/{subscription_id}/deliveries", params={"limit": 100})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def wait_for(predicate: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_matching_events_are_delivered_signed(app: Api, receiver: Receiver) -> None:
    sub = subscribe(app, receiver, name="orders", event_types=["order.*"])
    assert sub["secret"].startswith("whsec_")
    placed = emit(app, "order.placed", {"sku": "alpaca-wool", "qty": 3})
    emit(app, "invoice.paid", {"amount": 1})  # not subscribed
    wait_for(lambda: receiver.verified)
    _, headers, body = receiver.verified[0]
    assert body["type"] == "order.placed" and body["data"]["id"] == placed["id"]
    assert body["data"]["payload"] == {"sku": "alpaca-wool", "qty": 3} and body["timestamp"] == placed["ts"]
    log = wait_for(lambda: [d for d in deliveries(app, sub["id"]) if d["status"] == "delivered"])
    assert len(log) == 1 and log[0]["id"] == headers["webhook-id"] and log[0]["event_id"] == placed["id"]
    assert log[0]["attempts"] == 1 and log[0]["log"][0]["status_code"] == 200
    time.sleep(0.3)
    assert len(receiver.verified) == 1 and not receiver.refused
    # the secret is never shown again
    shown = app.request("GET", f"/api/v1/subscriptions/{sub['id']}").json()["data"]
    assert "secret" not in shown and sub["secret"] not in str(app.request("GET", "/api/v1/subscriptions").json())


def test_a_failing_receiver_gets_retries_with_backoff_and_the_log_shows_them(app: Api, receiver: Receiver) -> None:
    receiver.statuses[:] = [500, 503]  # two failures, then 200
    sub = subscribe(app, receiver, name="flaky", event_types=["parcel.lost"])
    event = emit(app, "parcel.lost", {"parcel": 9})
    delivered = wait_for(lambda: [d for d in deliveries(app, sub["id"]) if d["status"] == "delivered"])[0]
    assert delivered["attempts"] == 3 and delivered["event_id"] == event["id"]
    assert [a["status_code"] for a in delivered["log"]] == [500, 503, 200]
    assert [a["error"] for a in delivered["log"]] == ["HTTP 500", "HTTP 503", None]
    ids = {h["webhook-id"] for _, h, _ in receiver.verified}
    assert ids == {delivered["id"]}, "every retry carries the same webhook-id"
    times = [t for t, _, _ in receiver.verified]
    at = [datetime.fromisoformat(a["at"]).timestamp() for a in delivered["log"]]
    # backoff doubles: ~base, then ~2 x base (+-10 % jitter)
    assert times[1] - times[0] >= RETRY_BASE_S * 0.85 and at[2] - at[1] >= 2 * RETRY_BASE_S * 0.85


def test_a_receiver_that_keeps_failing_is_given_up_after_the_attempt_limit(app: Api, receiver: Receiver) -> None:
    receiver.statuses[:] = [500] * 10
    sub = subscribe(app, receiver, name="down", event_types=["*"])
    emit(app, "anything.at_all")
    failed = wait_for(lambda: [d for d in deliveries(app, sub["id"]) if d["status"] == "failed"])[0]
    assert failed["attempts"] == 3 and failed["next_attempt_at"] is None and failed["last_error"] == "HTTP 500"


def test_a_rotated_secret_signs_from_then_on(app: Api, receiver: Receiver) -> None:
    sub = subscribe(app, receiver, name="rotating", event_types=["rotate.me"])
    rotated = app.request("POST", f"/api/v1/subscriptions/{sub['id']}/rotate-secret")
    assert rotated.status_code == 200 and rotated.json()["data"]["secret"] != sub["secret"]
    receiver.secret = rotated.json()["data"]["secret"]
    emit(app, "rotate.me")
    wait_for(lambda: receiver.verified)
    assert not receiver.refused


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "meta", "url": "http://169.254.169.254/latest", "event_types": ["*"]}, 422),
        ({"name": "private", "url": "http://10.0.0.7/hook", "event_types": ["*"]}, 422),
        ({"name": "ftp", "url": "ftp://example.com/hook", "event_types": ["*"]}, 422),
        ({"name": "no types", "url": "https://93.184.216.34/hook", "event_types": []}, 422),
        ({"name": "bad type", "url": "https://93.184.216.34/hook", "event_types": ["Not A Type"]}, 422),
    ],
)
def test_bad_subscriptions_are_refused(app: Api, body: dict[str, Any], status: int) -> None:
    response = app.request("POST", "/api/v1/subscriptions", json=body)
    assert response.status_code == status, response.text


def test_crud_and_audit(app: Api) -> None:
    created = app.request("POST", "/api/v1/subscriptions", json={
        "name": "crud", "url": "https://93.184.216.34/hook", "event_types": ["a.*"]})  # fmt: skip
    sub = created.json()["data"]
    changed = app.request("PATCH", f"/api/v1/subscriptions/{sub['id']}", json={"enabled": False})
    assert changed.status_code == 200 and changed.json()["data"]["enabled"] is False
    assert app.request("DELETE", f"/api/v1/subscriptions/{sub['id']}").status_code == 200
    assert app.request("GET", f"/api/v1/subscriptions/{sub['id']}/deliveries").status_code == 404
    audit = app.request("GET", "/api/v1/audit", params={"action": "subscription."}).json()["data"]
    assert {a["action"] for a in audit} >= {"subscription.create", "subscription.update", "subscription.delete"}
    create = next(a for a in audit if a["action"] == "subscription.create" and a["resource_id"] == sub["id"])
    assert json.dumps(create["changes"]).count(sub["secret"]) == 0, "the secret never reaches the audit log"

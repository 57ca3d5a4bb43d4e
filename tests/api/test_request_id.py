"""Request ids: accepted from ``X-Request-ID`` (or made up), returned on every response, in every error
envelope and on every log line written while the request is handled."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import get
from litestar.testing import TestClient

from api.app import create_app
from api.auth import PUBLIC
from api.container import build_services
from engine.settings import Settings
from tests.api.conftest import Api

GENERATED = re.compile(r"^[0-9a-f]{32}$")
test_log = logging.getLogger("ragline.test_request_id")


@get("/api/v1/_test/logs", opt=PUBLIC, include_in_schema=False)
async def logs_something() -> dict[str, str]:
    test_log.info("handling the request")
    return {"ok": "yes"}


@get("/api/v1/_test/boom", opt=PUBLIC, include_in_schema=False)
async def boom() -> None:
    raise RuntimeError("an unexpected failure")


@pytest.fixture
def app_api(settings: Settings, embedder: Any) -> Iterator[Api]:
    """The real app plus two public routes: one that logs, one that fails."""
    services = build_services(settings, embedder=embedder)
    with TestClient(create_app(services=services, extra_handlers=[logs_something, boom])) as client:
        yield Api(client, settings.bootstrap_token)


def rid(response: Any) -> str:
    value = response.headers.get("x-request-id")
    assert value, (response.status_code, dict(response.headers))
    return str(value)


def test_a_request_id_is_made_up_when_none_is_sent_and_differs_per_request(api: Api) -> None:
    first = api.request("GET", "/api/v1/knowledge-bases")
    second = api.request("GET", "/api/v1/knowledge-bases")
    assert first.status_code == second.status_code == 200
    assert GENERATED.match(rid(first)) and GENERATED.match(rid(second))
    assert rid(first) != rid(second)


def test_the_clients_request_id_is_returned_on_success_and_in_the_error_envelope(api: Api) -> None:
    sent = "client-req-0001:abc/DEF=="
    ok = api.request("GET", "/api/v1/knowledge-bases", headers={"X-Request-ID": sent})
    assert ok.status_code == 200 and rid(ok) == sent
    missing = api.request("GET", "/api/v1/knowledge-bases/kb_000000000000000000000000", headers={"X-Request-ID": sent})
    assert missing.status_code == 404 and rid(missing) == sent
    assert missing.json() == {
        "data": None, "error": "Knowledge base not found", "message": "The requested knowledge base does not exist",
        "code": "not_found", "request_id": sent,
    }  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [b"x" * 129, b"", b"   ", b"bad\x01id", b"tab\tid", b"caf\xc3\xa9"],
    ids=["too-long", "empty", "blank", "control", "tab", "non-ascii"],
)
def test_an_unusable_request_id_is_replaced(api: Api, value: bytes) -> None:
    response = api.request("GET", "/api/v1/knowledge-bases", headers={"X-Request-ID": value})
    assert response.status_code == 200
    assert GENERATED.match(rid(response)), rid(response)


def test_the_longest_accepted_request_id_is_kept(api: Api) -> None:
    sent = "r" * 128
    assert rid(api.request("GET", "/api/v1/knowledge-bases", headers={"X-Request-ID": sent})) == sent


def test_every_kind_of_error_carries_the_request_id(app_api: Api) -> None:
    client = app_api.client
    responses = {
        "401 guard": client.get("/api/v1/knowledge-bases"),
        "401 bad token": client.get("/api/v1/knowledge-bases", headers={"Authorization": "Bearer rl_nope"}),
        "404 route": app_api.request("GET", "/api/v1/no-such-route"),
        "405": app_api.request("PUT", "/api/v1/search", json={}),
        "400": app_api.request("POST", "/api/v1/knowledge-bases", content=b"{oops",
                               headers={"Content-Type": "application/json"}),
        "422": app_api.request("POST", "/api/v1/knowledge-bases", json={"name": 5}),
        "404 engine": app_api.request("GET", "/api/v1/agents/agt_000000000000000000000000"),
        "500": client.get("/api/v1/_test/boom"),
    }  # fmt: skip
    for what, response in responses.items():
        assert response.status_code == int(what[:3]), (what, response.status_code, response.text)
        body = response.json()
        assert set(body) == {"data", "error", "message", "code", "request_id"}, (what, body)
        assert body["request_id"] == rid(response), what
        assert GENERATED.match(body["request_id"]), what
    sent = "trace-500"
    failed = client.get("/api/v1/_test/boom", headers={"X-Request-ID": sent})
    assert failed.status_code == 500 and rid(failed) == sent and failed.json()["request_id"] == sent
    unknown = client.get("/no/such/path", headers={"X-Request-ID": "trace-404"})
    assert unknown.status_code == 404 and rid(unknown) == "trace-404" and unknown.json()["request_id"] == "trace-404"


def test_public_and_streamed_responses_carry_the_request_id(api: Api) -> None:
    assert GENERATED.match(rid(api.client.get("/health")))
    assert GENERATED.match(rid(api.client.get("/schema/openapi.json")))
    with api.client.stream(
        "POST", "/api/v1/assistant/chat", json={"message": "hello"},
        headers={"Authorization": f"Bearer {api.token}", "X-Request-ID": "stream-1"},
    ) as stream:  # fmt: skip
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert rid(stream) == "stream-1"
        body = "".join(stream.iter_text())
    assert "event: done" in body or "event: error" in body


def test_log_lines_written_while_handling_a_request_carry_its_id(
    app_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ok = app_api.client.get("/api/v1/_test/logs", headers={"X-Request-ID": "log-me-1"})
    assert ok.status_code == 200 and rid(ok) == "log-me-1"
    failed = app_api.client.get("/api/v1/_test/boom")
    assert failed.status_code == 500
    handled = [r for r in caplog.records if r.getMessage() == "handling the request"]
    assert [getattr(r, "request_id", None) for r in handled] == ["log-me-1"]
    crashed = [r for r in caplog.records if r.name == "ragline.api" and r.getMessage().startswith("unhandled error")]
    assert [getattr(r, "request_id", None) for r in crashed] == [rid(failed)]
    # the configured handlers print it: the root handlers filter records and their format includes the id
    root_handlers = logging.getLogger().handlers
    formatted = [h.format(handled[0]) for h in root_handlers if h.formatter is not None and h.filters]
    assert formatted and all("log-me-1" in line for line in formatted), formatted
    # a line logged outside any request gets a placeholder, never an error
    record = logging.LogRecord("ragline", logging.INFO, __file__, 1, "outside", None, None)
    for handler in root_handlers:
        if handler.filters:
            assert handler.filter(record)
    assert getattr(record, "request_id", None) == "-"


@pytest.mark.e2e
def test_a_served_apps_access_lines_carry_the_request_id(tmp_path: Path) -> None:
    """``ragline serve``: uvicorn's access line for a request ends with that request's id."""
    from tests.e2e.conftest import start_server, stop_server

    server = start_server(tmp_path / "data")
    try:
        with server.client() as client:
            ok = client.get("/api/v1/knowledge-bases", headers={"X-Request-ID": "live-200"})
            unknown = client.get("/api/v1/no-such-route", headers={"X-Request-ID": "live-404"})
            made_up = client.get("/health")
        assert (ok.status_code, rid(ok)) == (200, "live-200")
        assert (unknown.status_code, rid(unknown), unknown.json()["request_id"]) == (404, "live-404", "live-404")
        generated = rid(made_up)
        assert GENERATED.match(generated)
    finally:
        stop_server(server)
    lines = server.log_path.read_text(errors="replace").splitlines()
    assert any('"GET /api/v1/knowledge-bases HTTP/1.1" 200 OK [live-200]' in line for line in lines), lines[-20:]
    assert any('"GET /api/v1/no-such-route HTTP/1.1" 404 Not Found [live-404]' in line for line in lines), lines[-20:]
    assert any(f'"GET /health HTTP/1.1" 200 OK [{generated}]' in line for line in lines), lines[-20:]
    assert any("[-]" in line for line in lines), lines[-20:]  # uvicorn's own lines outside any request


@pytest.mark.e2e
def test_access_lines_can_be_turned_off(tmp_path: Path) -> None:
    """``RAGLINE_ACCESS_LOG=false``: no line per request, while the server's own lines go on."""
    from tests.e2e.conftest import start_server, stop_server

    server = start_server(tmp_path / "data", {"RAGLINE_ACCESS_LOG": "false"})
    try:
        with server.client() as client:
            ok = client.get("/api/v1/knowledge-bases", headers={"X-Request-ID": "quiet-200"})
        assert (ok.status_code, rid(ok)) == (200, "quiet-200")
    finally:
        stop_server(server)
    lines = server.log_path.read_text(errors="replace").splitlines()
    assert not any("/api/v1/knowledge-bases" in line or "/health" in line for line in lines), lines[-20:]
    assert any("Application startup complete" in line for line in lines), lines[-20:]

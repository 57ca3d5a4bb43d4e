"""An unreachable Qdrant server (QDRANT_URL): the app starts degraded, search answers 503, uploads wait."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import Api, make_settings, open_api
from tests.helpers.pdfs import HANDBOOK_PAGES, make_pdf


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens here once the socket is closed


@pytest.fixture
def outage(tmp_path: Any, embedder: Any) -> Iterator[Api]:
    settings = make_settings(tmp_path / "data", qdrant_url=f"http://127.0.0.1:{closed_port()}")
    with open_api(settings, embedder) as api:  # would raise if the start failed
        yield api


def test_the_server_starts_and_search_says_503(outage: Api) -> None:
    kb = outage.create_kb("handbook")
    started = time.monotonic()
    response = outage.request("POST", "/api/v1/search", json={"query": "parental leave", "kb_ids": [kb]})
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "store_unavailable" and response.headers["retry-after"]
    assert time.monotonic() - started < 10


def test_uploads_are_kept_and_wait_for_the_store(outage: Api) -> None:
    kb = outage.create_kb("handbook")
    upload = outage.upload(kb, "handbook.pdf", make_pdf(HANDBOOK_PAGES))
    assert upload.status_code == 201, upload.text
    file_id = upload.json()["data"]["id"]
    deadline = time.monotonic() + 30
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = outage.request("GET", f"/api/v1/knowledge-bases/{kb}/files/{file_id}").json()["data"]
        if (info["error"] or "").startswith("waiting"):
            break
        time.sleep(0.2)
    assert info["status"] == "queued" and info["error"].startswith("waiting: the vector store"), info
    assert info["attempts"] == 0  # an outage spends none of the file's retries
    assert outage.request("GET", f"/api/v1/knowledge-bases/{kb}/files/{file_id}/download").content[:4] == b"%PDF"


def test_health_says_degraded_while_the_store_is_unreachable(outage: Api) -> None:
    health = outage.client.get("/health")
    assert health.status_code == 200  # alive
    body = health.json()
    assert body["status"] == "degraded" and body["ready"] is False
    store = body["parts"]["vector_store"]
    assert store["state"] == "failed" and "unreachable" in store["error"]

"""A real ``ragline serve`` for the seed-compatibility tests, with a knowledge base and a scripted model.

Clients written for the seed APIs (``../shared/seeds/``) are imitated with real client libraries
(``httpx``, ``httpx-sse``): only the host and the ``/api/v1`` prefix differ from what the seeds document.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.e2e.conftest import LiveServer, start_server, stop_server
from tests.helpers.openai_server import Call, Reply, Server, serve
from tests.helpers.pdfs import HANDBOOK_PAGES, make_pdf

# The scripted model: a one-sentence preamble, then knowledge_search; after the search, a cited answer.
PREAMBLE = "Let me look that up in the handbook."
ANSWER = "New parents get sixteen weeks of paid parental leave [1]. It can be split into three blocks [1]."


def model_reply(request: dict[str, Any]) -> Reply:
    if request.get("model") == "failing":  # agents with model "openai/failing": the provider errors
        return Reply(status=500, text="provider exploded")
    if any(m.get("role") == "tool" for m in request.get("messages", [])):
        return Reply(text=ANSWER, split=12)
    return Reply(text=PREAMBLE, calls=(Call("call_1", "knowledge_search", '{"query": "parental leave"}'),))


@dataclass
class Ragline:
    server: LiveServer
    model: Server
    kb_id: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def token(self) -> str:
        return self.server.token

    def client(self, **headers: str) -> httpx.Client:
        """A bare client, as a seed's client would build it: its own auth headers, nothing else."""
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def admin(self) -> httpx.Client:
        return self.client(Authorization=f"Bearer {self.token}")


def sse_frames(client: httpx.Client, method: str, url: str, **kwargs: Any) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) of every frame, read with httpx-sse until the stream ends."""
    headers = {"Accept": "text/event-stream", **kwargs.pop("headers", {})}
    with connect_sse(client, method, url, headers=headers, **kwargs) as source:
        source.response.raise_for_status()
        return [(sse.event, sse.json()) for sse in source.iter_sse()]


@pytest.fixture(scope="session")
def ragline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ragline]:
    model_server = serve(by_request=model_reply)
    model = next(model_server)
    server = start_server(
        tmp_path_factory.mktemp("compat") / "data",
        {"RAGLINE_MODEL_API_BASE": model.base_url, "RAGLINE_MODEL_API_KEY": "sk-compat"},
    )
    try:
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.token}"}) as c:
            kb = c.post("/api/v1/knowledge-bases", json={"name": "handbook"}).json()["data"]["id"]
            handbook = {"file": ("handbook.pdf", make_pdf(HANDBOOK_PAGES))}
            file_id = c.post(f"/api/v1/knowledge-bases/{kb}/files", files=handbook).json()["data"]["id"]
            deadline = time.monotonic() + 120
            while c.get(f"/api/v1/knowledge-bases/{kb}/files/{file_id}").json()["data"]["status"] != "ready":
                assert time.monotonic() < deadline, "the handbook was not ingested in 120 s"
                time.sleep(0.1)
        yield Ragline(server, model, kb)
    finally:
        stop_server(server)
        model_server.close()

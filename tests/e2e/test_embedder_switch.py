"""Switching a knowledge base's embedder on a real server while 16 clients search: no error, every answer from
exactly one of the two collections, the new one's after the swap; a cancelled switch leaves everything as it was.

The new embedder is a model the test makes (the bundled MiniLM cut to one layer, with a 128-d Dense head:
``tests/helpers/tiny_models.py``), offered to knowledge bases through ``RAGLINE_EMBEDDERS``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LiveServer
from tests.evaluation.corpus import DOCS, GOLDEN
from tests.helpers.pdfs import reportlab_pdf
from tests.helpers.tiny_models import tiny_models

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLIENTS = 16
QUERIES = ["How many years does a llama live?", "waggle dance of bees", "sourdough starter feeding",
           "retrieval chunks embedded with page numbers", "castling rules in chess"]  # fmt: skip
Signature = tuple[tuple[str, float], ...]


def signature(hits: list[dict[str, Any]]) -> Signature:
    return tuple((hit["chunk_id"], round(hit["score"], 3)) for hit in hits)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Searchers:
    """16 threads searching the knowledge base in a loop; every answer recorded with when it was asked."""

    def __init__(self, server: LiveServer, kb: str) -> None:
        self.server, self.kb = server, kb
        self.stop = threading.Event()
        self.answers: list[tuple[float, str, int, Signature | str]] = []  # (started, query, status, signature)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(n,), daemon=True) for n in range(CLIENTS)]

    def _loop(self, n: int) -> None:
        with self.server.client() as client:
            i = n
            deadline = time.monotonic() + 600  # bounded whatever happens
            while not self.stop.is_set() and time.monotonic() < deadline:
                query = QUERIES[i % len(QUERIES)]
                i += 1
                started = time.monotonic()
                try:
                    response = client.post("/api/v1/search", json={"query": query, "kb_ids": [self.kb], "top_k": 5})
                    result: Signature | str = (
                        signature(response.json()["data"]) if response.status_code == 200 else response.text[:300]
                    )
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status, result = 0, repr(exc)
                with self.lock:
                    self.answers.append((started, query, status, result))

    def __enter__(self) -> Searchers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)


def test_switching_the_embedder_under_search_load(live_server_factory: Any) -> None:
    tiny = tiny_models()["st"]
    # 16 clients on one token: far beyond the default 600 requests a minute
    env = {"RAGLINE_EMBEDDERS": f"tiny=sentence-transformers:{tiny}", "RAGLINE_RATE_LIMIT_PER_MINUTE": "10000000"}
    server: LiveServer = live_server_factory(env)
    with server.client() as api:
        assert "tiny" in api.get("/api/v1/embedders").json()["data"]
        kb = api.post("/api/v1/knowledge-bases", json={"name": "topics"}).json()["data"]["id"]
        files = [(name, text.encode()) for name, text in DOCS.items()]
        files += [(f"manual-{n}.pdf", reportlab_pdf(6, title=f"Manual {n}")) for n in range(3)]
        for name, data in files:
            made = api.post(f"/api/v1/knowledge-bases/{kb}/files", files={"file": (name, data)},
                            params={"wait": "true", "wait_s": 120}, timeout=150)  # fmt: skip
            assert made.json()["data"]["status"] == "ready", made.text
        golden = api.post(f"/api/v1/knowledge-bases/{kb}/golden-sets", json={"name": "topics", "queries": GOLDEN})
        assert golden.status_code == 201, golden.text
        old_index = api.get(f"/api/v1/knowledge-bases/{kb}/index").json()["data"]
        assert old_index["collection"] == "default" and old_index["dim"] == 384

        def answers() -> dict[str, Signature]:
            found = {}
            for query in QUERIES:
                hits = api.post("/api/v1/search", json={"query": query, "kb_ids": [kb], "top_k": 5}).json()["data"]
                found[query] = signature(hits)
            return found

        before = answers()
        with Searchers(server, kb) as searchers:
            time.sleep(1.0)
            started = api.post(f"/api/v1/knowledge-bases/{kb}/index-switches",
                               json={"embedder": "tiny", "golden_set_id": golden.json()["data"]["id"], "grace_s": 3})
            assert started.status_code == 202, started.text
            switch_id = started.json()["data"]["id"]
            again = api.post(f"/api/v1/knowledge-bases/{kb}/index-switches", json={"chunk_tokens": 120})
            assert again.status_code == 409  # one switch at a time
            progress: list[float] = []

            def swapped() -> dict[str, Any] | None:
                state = api.get(f"/api/v1/knowledge-bases/{kb}/index-switches/{switch_id}").json()["data"]
                progress.append(state["progress"])
                assert state["status"] not in ("failed", "cancelled"), state
                return state if state["status"] == "swapped" else None

            state = wait_for(swapped, "the swap")
            seen_swapped = time.monotonic()
            time.sleep(2.0)  # searches go on after the swap
        after = answers()

    assert state["files_done"] == state["files_total"] == len(files) and state["chunks_done"] > 0
    assert progress == sorted(progress) and len(set(progress)) > 1, progress  # progress was visible as it went
    errors = [a for a in searchers.answers if a[2] != 200]
    assert not errors, errors[:5]
    assert len(searchers.answers) > 100
    assert all(before[q] != after[q] for q in QUERIES)  # the two collections answer differently
    for asked, query, _, result in searchers.answers:
        assert result in (before[query], after[query]), (query, result)  # exactly one of the two, never a mix
        if asked > seen_swapped:
            assert result == after[query], (query, result)  # after the swap: the new collection only
    assert any(a[3] == before[a[1]] for a in searchers.answers) and any(a[3] == after[a[1]] for a in searchers.answers)

    with server.client() as api:
        index = api.get(f"/api/v1/knowledge-bases/{kb}/index").json()["data"]
        assert (index["embedder"], index["dim"], index["collection"]) == ("tiny", 128, state["target_collection"])
        live = api.get(f"/api/v1/knowledge-bases/{kb}/evaluations/{state['evaluation_live_id']}").json()["data"]
        shadow = api.get(f"/api/v1/knowledge-bases/{kb}/evaluations/{state['evaluation_shadow_id']}").json()["data"]
        assert live["status"] == shadow["status"] == "succeeded" and live["switch_id"] == shadow["switch_id"]
        assert live["config"]["collection"] == "default" and shadow["config"]["collection"] == index["collection"]
        time.sleep(3.5)  # the grace period: the old points are gone, search still answers from the new collection
        assert answers_now(api, kb) == after
        # an upload after the swap is embedded by the new model, into the new collection
        upload = {"file": ("tides-2.md", b"# Tides\n\nNeap tides come with the half moon.")}
        made = api.post(f"/api/v1/knowledge-bases/{kb}/files", files=upload, params={"wait": "true"})
        assert made.json()["data"]["status"] == "ready", made.text
        hits = api.post("/api/v1/search", json={"query": "neap tides", "kb_ids": [kb], "top_k": 3}).json()["data"]
        assert "tides-2.md" in {h["file_name"] for h in hits}


def answers_now(api: httpx.Client, kb: str) -> dict[str, Signature]:
    return {
        q: signature(api.post("/api/v1/search", json={"query": q, "kb_ids": [kb], "top_k": 5}).json()["data"])
        for q in QUERIES
    }


def test_a_cancelled_switch_leaves_everything_as_it_was(live_server_factory: Any, tmp_path: Path) -> None:
    tiny = tiny_models()["st"]
    server: LiveServer = live_server_factory({"RAGLINE_EMBEDDERS": f"tiny=sentence-transformers:{tiny}"})
    with server.client() as api:
        kb = api.post("/api/v1/knowledge-bases", json={"name": "manuals"}).json()["data"]["id"]
        for n in range(4):
            made = api.post(f"/api/v1/knowledge-bases/{kb}/files", params={"wait": "true", "wait_s": 120},
                            files={"file": (f"manual-{n}.pdf", reportlab_pdf(8, title=f"Manual {n}"))}, timeout=150)
            assert made.json()["data"]["status"] == "ready", made.text
        index = api.get(f"/api/v1/knowledge-bases/{kb}/index").json()["data"]
        before = answers_now(api, kb)
        started = api.post(f"/api/v1/knowledge-bases/{kb}/index-switches", json={"embedder": "tiny"})
        assert started.status_code == 202, started.text
        switch = started.json()["data"]
        cancelled = api.post(f"/api/v1/knowledge-bases/{kb}/index-switches/{switch['id']}/cancel", timeout=120)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["data"]["status"] == "cancelled"
        assert api.get(f"/api/v1/knowledge-bases/{kb}/index").json()["data"] == index
        assert answers_now(api, kb) == before
        assert not (tmp_path / "data" / "collections" / switch["target_collection"]).exists()
        listed = api.get(f"/api/v1/knowledge-bases/{kb}/index-switches").json()["data"]
        assert [s["status"] for s in listed] == ["cancelled"]
        again = api.post(f"/api/v1/knowledge-bases/{kb}/index-switches/{switch['id']}/cancel")
        assert again.status_code == 409
        audit = api.get("/api/v1/audit", params={"resource_type": "index_switch"}).json()["data"]
        assert {a["action"] for a in audit} >= {"index_switch.create", "index_switch.cancel"}

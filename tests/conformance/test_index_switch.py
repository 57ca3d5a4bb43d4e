"""Knowledge bases' own collections on both backends (the embedded shard, and qdrant-client's ``:memory:`` mode
standing in for a Qdrant server): a switch to a model on disk and back, aliases, grace periods, deletion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.container import build_services
from engine.stores.qdrant_server import QdrantServerVectorStore
from engine.types import SearchFilters
from tests.api.conftest import Api, make_settings
from tests.evaluation.corpus import DOCS, EXPECTED, GOLDEN
from tests.helpers.tiny_models import tiny_models

pytestmark = pytest.mark.slow
QUERIES = ["How many years does a llama live?", "waggle dance of bees", "castling rules in chess"]


@pytest.fixture(params=["edge", "qdrant-client-memory"])
def api(request: pytest.FixtureRequest, tmp_path: Path, embedder: Any) -> Iterator[Api]:
    models = tiny_models()
    settings = make_settings(tmp_path / "data", embedders=(f"tiny=sentence-transformers:{models['st']}",
                                                           "broken=onnx:/nonexistent/model"))  # fmt: skip
    store = None
    if request.param != "edge":
        store = QdrantServerVectorStore(location=":memory:", collection=settings.qdrant_collection, dim=embedder.dim)
    with TestClient(create_app(services=build_services(settings, embedder=embedder, store=store))) as client:
        yield Api(client, settings.bootstrap_token)


def answers(api: Api, kb: str) -> dict[str, list[tuple[str, float]]]:
    return {q: [(h["file_name"], round(h["score"], 3)) for h in api.search(q, kb_ids=[kb], top_k=3)] for q in QUERIES}


def switch(api: Api, kb: str, body: dict[str, Any]) -> dict[str, Any]:
    started = api.request("POST", f"/api/v1/knowledge-bases/{kb}/index-switches", json=body)
    assert started.status_code == 202, started.text
    url = f"/api/v1/knowledge-bases/{kb}/index-switches/{started.json()['data']['id']}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = api.request("GET", url).json()["data"]
        assert state["status"] not in ("failed", "cancelled"), state
        if state["status"] == "swapped":
            return dict(state)
        time.sleep(0.1)
    raise AssertionError("no swap in 300 s")


def test_switch_to_a_model_on_disk_and_back(api: Api) -> None:
    services = api.services
    kb = api.create_kb("topics")
    other = api.create_kb("other")  # stays in the default collection throughout
    for name, text in DOCS.items():
        for target in (kb, other):
            file_id = api.upload(target, name, text.encode()).json()["data"]["id"]
            assert api.wait_ingested(target, file_id)["status"] == "ready"
    golden = api.request("POST", f"/api/v1/knowledge-bases/{kb}/golden-sets", json={"name": "t", "queries": GOLDEN})
    before, others = answers(api, kb), answers(api, other)
    workspace = api.request("GET", "/api/v1/me").json()["data"]["workspace_id"]

    first = switch(api, kb, {"embedder": "tiny", "golden_set_id": golden.json()["data"]["id"], "grace_s": 0.5})
    index = api.request("GET", f"/api/v1/knowledge-bases/{kb}/index").json()["data"]
    assert (index["embedder"], index["dim"], index["collection"]) == ("tiny", 128, first["target_collection"])
    assert first["files_done"] == len(DOCS) and first["source_collection"] == "default"
    shadow = api.request("GET", f"/api/v1/knowledge-bases/{kb}/evaluations/{first['evaluation_shadow_id']}")
    live = api.request("GET", f"/api/v1/knowledge-bases/{kb}/evaluations/{first['evaluation_live_id']}")
    assert {m["mode"]: m["ndcg_at_10"] for m in live.json()["data"]["modes"]}["sparse"] == EXPECTED
    assert shadow.json()["data"]["config"]["embedder"] == "tiny" and shadow.json()["data"]["status"] == "succeeded"
    after = answers(api, kb)
    assert after != before and after["How many years does a llama live?"][0][0] == "llamas.md"
    assert answers(api, other) == others  # the other knowledge base: untouched, still the default collection
    hits = api.search("llama", top_k=20, group_by="file")  # no kb_ids: both knowledge bases, one collection each
    assert {(h["kb_id"], h["file_name"]) for h in hits} >= {(kb, "llamas.md"), (other, "llamas.md")}

    def default_points() -> int:
        return int(api.call(services.store.count, SearchFilters(workspace_id=workspace, kb_ids=(kb,))))

    deadline = time.monotonic() + 60
    while default_points() and time.monotonic() < deadline:  # the grace period, then the old points go
        time.sleep(0.2)
    assert default_points() == 0 and answers(api, kb) == after
    if isinstance(services.store, QdrantServerVectorStore):  # the server's alias moved with the pointer
        aliases = api.call(services.store._client.get_aliases).aliases
        assert [(a.collection_name) for a in aliases if a.alias_name.endswith(kb.split("_")[-1][:24])] == [
            first["target_collection"]]

    second = switch(api, kb, {"embedder": "minilm-onnx-int8", "chunk_tokens": 120, "grace_s": 0.5})
    assert second["source_collection"] == first["target_collection"]
    index = api.request("GET", f"/api/v1/knowledge-bases/{kb}/index").json()["data"]
    assert (index["embedder"], index["dim"], index["chunk_tokens"]) == ("minilm-onnx-int8", 384, 120)
    assert answers(api, kb)["How many years does a llama live?"][0][0] == "llamas.md"
    # a new upload goes into the live collection with its embedder and chunking
    file_id = api.upload(kb, "tides-2.md", b"# Tides\n\nNeap tides come with the half moon.").json()["data"]["id"]
    assert api.wait_ingested(kb, file_id)["status"] == "ready"
    assert api.search("neap tides half moon", kb_ids=[kb], top_k=1)[0]["file_name"] == "tides-2.md"
    preview = api.request("POST", f"/api/v1/knowledge-bases/{kb}/files", params={"dry_run": "true"},
                          files={"file": ("x.md", b"# X\n\nAlpacas hum.")}).json()["data"]  # fmt: skip
    assert (preview["chunk_tokens"], preview["embedder"]) == (120, services.embedder.name)

    refused = api.request("POST", f"/api/v1/knowledge-bases/{kb}/index-switches", json={"embedder": "broken"})
    assert refused.status_code == 422 and "cannot be used" in refused.json()["message"]
    unknown = api.request("POST", f"/api/v1/knowledge-bases/{kb}/index-switches", json={"embedder": "/etc/passwd"})
    assert unknown.status_code == 422 and "unknown embedder" in unknown.json()["message"]
    same = api.request("POST", f"/api/v1/knowledge-bases/{kb}/index-switches", json={"chunk_tokens": 120})
    assert same.status_code == 422

    deleted = api.request("DELETE", f"/api/v1/knowledge-bases/{kb}")
    assert deleted.status_code == 200
    names = [first["target_collection"], second["target_collection"]]
    if isinstance(services.store, QdrantServerVectorStore):
        assert not any(api.call(services.store._client.collection_exists, name) for name in names)
    else:
        assert not any((services.settings.data_dir / "collections" / name).exists() for name in names)

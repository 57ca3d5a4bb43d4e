"""Readiness: ``/health`` says ``warming`` until what the first search and chat need is loaded, then ``ready``;
requests that come earlier wait for that same warm-up. And a file's readiness: ``POST …/files?wait=true``."""

from __future__ import annotations

import fcntl
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from engine.embedders.onnx_export import export_key
from engine.embedders.onnx_int8 import OnnxInt8Embedder
from engine.embedders.sentence_transformer import bundled_model_path
from engine.llm import ModelEndpoint
from engine.models import create_model_provider
from engine.ports import ModelClient, ModelProvider
from engine.settings import Settings
from tests.api.conftest import Api, open_api

ROOT = Path(__file__).resolve().parents[2]
HANDBOOK = (ROOT / "samples" / "handbook.md").read_bytes()
BROKEN_PDF = b"%PDF-1.4\nnot really a PDF\n%%EOF\n"


def health(api: Api) -> dict[str, Any]:
    response = api.client.get("/health")
    assert response.status_code == 200  # liveness: 200 while warming too
    return dict(response.json())


def wait_for_status(api: Api, *statuses: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = health(api)
        if body["status"] in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"/health never said {statuses}: {body}")


class ExportInProgress:
    """Holds the export lock of an empty model cache, as another process exporting the model would.
    ``finish`` completes that "export" (the real export, copied into place) and releases the lock."""

    def __init__(self, cache_dir: Path) -> None:
        key = export_key(bundled_model_path())
        self.cache_dir, self.name = cache_dir, f"all-MiniLM-L6-v2-int8-{key}"
        cache_dir.mkdir(parents=True)
        self._lock = (cache_dir / f".{key}.lock").open("a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def finish(self) -> None:
        if self._lock.closed:
            return
        shutil.copytree(Settings.from_env().model_cache_dir / self.name, self.cache_dir / self.name)
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


def test_warming_until_the_embedder_is_loaded_and_early_requests_wait_for_the_same_warm_up(
    settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    assert embedder.dim == 384  # the session's embedder: the real export exists in the model cache to copy from
    export = ExportInProgress(tmp_path / "model-cache")
    cold = OnnxInt8Embedder(cache_dir=export.cache_dir, threads=1)  # nothing exported or loaded yet
    pool = ThreadPoolExecutor(2)
    with open_api(settings, cold) as api:
        try:
            body = wait_for_status(api, "warming")
            assert body["ready"] is False
            assert body["parts"]["embedder"] == {"state": "warming", "name": "all-MiniLM-L6-v2"}
            assert body["parts"]["search"] == {"state": "pending"}
            assert body["parts"]["model"]["name"] == "ragline/extractive"
            kb = api.create_kb()  # what needs no model answers at once
            upload = pool.submit(api.upload, kb, "handbook.md", HANDBOOK, params={"wait": "true", "wait_s": 90})
            search = pool.submit(api.request, "POST", "/api/v1/search", json={"query": "parental leave"})
            time.sleep(1.0)
            assert not search.done() and not upload.done()  # waiting for the warm-up, not failing
            assert health(api)["status"] == "warming"
            export.finish()
            searched = search.result(timeout=60)
            assert searched.status_code == 200, searched.text
            assert searched.json()["data"] == []  # it ran once the model was loaded (the file came later)
            uploaded = upload.result(timeout=90)
            assert uploaded.status_code == 201 and uploaded.json()["data"]["status"] == "ready", uploaded.text
            body = wait_for_status(api, "ready", "degraded")
            assert body["status"] == "ready" and body["ready"] is True, body
            assert {name: part["state"] for name, part in body["parts"].items()} == dict.fromkeys(
                ("embedder", "search", "model", "vector_store"), "ready"
            )
            assert body["parts"]["embedder"]["seconds"] >= 1.0 and body["warm_up_s"] >= 1.0  # it waited for the export
            hits = api.search("how long is parental leave?", top_k=1)
            assert "18 weeks" in hits[0]["text"]
            # one export, made by the "other process": the server waited for it instead of exporting again
            assert sorted(p.name for p in export.cache_dir.iterdir() if not p.name.startswith(".")) == [export.name]
        finally:
            export.finish()  # never leave the warm-up blocked: the app could not shut down
            pool.shutdown(wait=True)


class ModelsThatCannotWarmUp:
    """The real provider, except that warming up the default model fails (e.g. a missing SDK)."""

    def __init__(self, inner: ModelProvider) -> None:
        self.inner = inner

    def get_model(self, name: str, endpoint: ModelEndpoint | None = None) -> ModelClient:
        return self.inner.get_model(name, endpoint)

    def warm_up(self) -> None:
        raise RuntimeError("the provider's SDK is not installed")


def test_a_part_that_fails_to_warm_up_is_reported_and_the_rest_serves(settings: Settings, embedder: Any) -> None:
    models = ModelsThatCannotWarmUp(create_model_provider(settings))
    with open_api(settings, embedder, models=models) as api:
        body = wait_for_status(api, "ready", "degraded")
        assert body["status"] == "degraded" and body["ready"] is False
        assert body["parts"]["model"]["state"] == "failed"
        assert body["parts"]["model"]["error"] == "RuntimeError: the provider's SDK is not installed"
        assert body["parts"]["embedder"]["state"] == body["parts"]["search"]["state"] == "ready"
        assert api.search("anything") == []  # search does not need the model


# --- POST /knowledge-bases/{id}/files?wait=true --------------------------------------------------------------


def test_upload_with_wait_answers_once_the_file_is_ready(api: Api) -> None:
    kb = api.create_kb()
    response = api.upload(kb, "handbook.md", HANDBOOK, params={"wait": "true"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["data"]["status"] == "ready" and body["data"]["chunks_done"] > 0
    assert body["message"] == f"File ready ({body['data']['chunks_done']} chunks)"
    assert "27 days" in api.search("how many vacation days?", top_k=1)[0]["text"]  # searchable right away
    again = api.upload(kb, "handbook.md", HANDBOOK, params={"wait": "true"}).json()  # same bytes: the same file
    assert again["data"]["duplicate"] is True and again["data"]["status"] == "ready"


def test_upload_with_wait_reports_a_failed_file(api: Api) -> None:
    kb = api.create_kb()
    body = api.upload(kb, "broken.pdf", BROKEN_PDF, params={"wait": "true"}).json()
    assert body["data"]["status"] == "failed"
    assert body["message"] == f"File failed: {body['data']['error']}" and body["data"]["error"]


def test_upload_with_wait_gives_up_after_wait_s_with_the_current_status(api: Api) -> None:
    kb = api.create_kb()
    api.call(api.services.worker.stop)  # nothing is processed: the file stays queued
    started = time.monotonic()
    body = api.upload(kb, "handbook.md", HANDBOOK, params={"wait": "true", "wait_s": "0.5"}).json()
    assert 0.5 <= time.monotonic() - started < 10
    assert body["data"]["status"] == "queued"
    assert body["message"] == "File still queued after 0.5 s (0 %)"
    assert api.upload(kb, "x.md", b"# x\n\nnot waiting\n").json()["message"] == "File queued for ingestion"


def test_upload_with_wait_waits_for_every_file_of_a_multi_file_upload(api: Api) -> None:
    kb = api.create_kb()
    files = [("file", ("handbook.md", HANDBOOK)), ("file", ("broken.pdf", BROKEN_PDF)), ("file", ("a.png", b"\x89PNG"))]
    body = api.request("POST", f"/api/v1/knowledge-bases/{kb}/files", files=files, params={"wait": "true"}).json()
    assert [(r["name"], (r["file"] or {}).get("status"), r["code"]) for r in body["data"]] == [
        ("handbook.md", "ready", None), ("broken.pdf", "failed", None), ("a.png", None, "unsupported_media_type"),
    ]  # fmt: skip
    assert body["message"] == "1 of 3 files ready"


def test_wait_s_is_bounded(api: Api) -> None:
    kb = api.create_kb()
    for bad in ("121", "0", "-1", "soon"):
        response = api.upload(kb, "handbook.md", HANDBOOK, params={"wait": "true", "wait_s": bad})
        assert response.status_code == 400, (bad, response.text)

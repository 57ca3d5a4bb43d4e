"""Metadata given at upload travels with every chunk and narrows searches; bad metadata is a clear 4xx."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.slow

NOTES = {
    "legal-2024.md": ("# Contract review\n\nEvery supplier contract is reviewed for liability caps.", "legal", 2024),
    "legal-2025.md": ("# Contract renewal\n\nSupplier contracts renew each March after review.", "legal", 2025),
    "ops-2025.md": ("# Supplier onboarding\n\nNew suppliers get a contract checklist from ops.", "ops", 2025),
}


def upload_with_metadata(api: Api, kb: str, name: str, text: str, metadata: Any) -> Any:
    return api.request(
        "POST",
        f"/api/v1/knowledge-bases/{kb}/files",
        files={"file": (name, text.encode())},
        data={"metadata": metadata if isinstance(metadata, str) else json.dumps(metadata)},
    )


def test_metadata_is_stored_returned_and_filters_search(api: Api) -> None:
    kb = api.create_kb()
    for name, (text, department, year) in NOTES.items():
        meta = {"department": department, "year": year, "regions": ["eu"] if year == 2024 else ["us", "eu"]}
        response = upload_with_metadata(api, kb, name, text, meta)
        assert response.status_code == 201, response.text
        assert response.json()["data"]["metadata"] == meta
        assert api.wait_ingested(kb, response.json()["data"]["id"])["status"] == "ready"

    def names(**body: Any) -> list[str]:
        return sorted({hit["file_name"] for hit in api.search("supplier contract review", top_k=10, **body)})

    assert names() == sorted(NOTES)
    assert names(metadata={"department": "legal"}) == ["legal-2024.md", "legal-2025.md"]
    assert names(metadata={"department": ["legal", "ops"], "year": 2025}) == ["legal-2025.md", "ops-2025.md"]
    assert names(metadata={"regions": "us"}) == ["legal-2025.md", "ops-2025.md"]
    assert names(metadata={"year": "2025"}) == []  # a string is not the integer 2025
    assert names(metadata={"department": []}) == []
    for mode in ("dense", "sparse"):
        assert names(metadata={"department": "ops"}, mode=mode) == ["ops-2025.md"]
    hit = api.search("liability caps", top_k=1, metadata={"year": 2024})[0]
    assert hit["metadata"] == {"department": "legal", "year": 2024, "regions": ["eu"]}


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "must be a JSON object"),
        ({"public": True}, "booleans cannot be matched"),
        ({"score": 0.5}, "strings, integers or lists of strings"),
        ({"a.b": "x"}, "must be a letter"),
        ("[" * 8_000 + "]" * 8_000, "not valid JSON"),
        ("[" * 10_000 + "]" * 10_000, "at most 16384 characters"),
    ],
)
def test_bad_metadata_refuses_the_upload_with_a_reason(api: Api, metadata: Any, reason: str) -> None:
    kb = api.create_kb()
    response = upload_with_metadata(api, kb, "note.md", "# Note\n\nA short note.", metadata)
    assert response.status_code in (400, 422), response.text
    body = response.json()
    assert body["data"] is None and reason in body["message"]
    assert api.request("GET", f"/api/v1/knowledge-bases/{kb}/files").json()["data"] == []  # nothing stored


@pytest.mark.parametrize("metadata", [{"public": True}, {"score": 0.5}, {"code": ["7", 7]}, {"a b": "x"}, [1], "legal"])
def test_bad_metadata_filters_are_4xx(api: Api, metadata: Any) -> None:
    response = api.request("POST", "/api/v1/search", json={"query": "contract", "metadata": metadata})
    assert response.status_code in (400, 422), response.text
    assert response.json()["data"] is None and response.json()["message"]


def test_patch_replaces_tags_and_metadata_without_reembedding(api: Api) -> None:
    kb = api.create_kb()
    text, _, _ = NOTES["legal-2024.md"]
    file = upload_with_metadata(api, kb, "legal-2024.md", text, {"department": "legal", "year": 2024}).json()["data"]
    ready = api.wait_ingested(kb, file["id"])
    url = f"/api/v1/knowledge-bases/{kb}/files/{file['id']}"

    patched = api.request("PATCH", url, json={"metadata": {"department": "finance"}, "tags": ["audit"]})
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["metadata"] == {"department": "finance"}
    assert patched.json()["data"]["tags"] == ["audit"]
    assert patched.json()["data"]["embed_ms"] == ready["embed_ms"]  # relabelled in place, not re-ingested
    hits = api.search("liability caps", metadata={"department": "finance"}, tags=["audit"])
    assert hits and hits[0]["metadata"] == {"department": "finance"} and hits[0]["tags"] == ["audit"]
    assert api.search("liability caps", metadata={"department": "legal"}) == []

    tags_only = api.request("PATCH", url, json={"tags": []}).json()["data"]
    assert tags_only["tags"] == [] and tags_only["metadata"] == {"department": "finance"}  # omitted: kept

    for bad in ({"metadata": {"public": True}}, {"metadata": {"a.b": "x"}}, {"metadata": [1]}, {"tags": "x"}):
        response = api.request("PATCH", url, json=bad)
        assert response.status_code in (400, 422) and response.json()["data"] is None, (bad, response.text)
    missing = api.request("PATCH", f"/api/v1/knowledge-bases/{kb}/files/file_unknown", json={"tags": []})
    assert missing.status_code == 404

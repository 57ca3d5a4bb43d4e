"""Upload a real PDF, find the right page again, download it, delete it, and survive a restart."""

from __future__ import annotations

import pytest

from tests.api.conftest import open_api
from tests.helpers.pdfs import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.slow


def test_uploaded_pdf_is_found_on_the_right_page(api):
    kb = api.create_kb()
    pdf = make_pdf(HANDBOOK_PAGES)
    response = api.upload(kb, "handbook.pdf", pdf)
    assert response.status_code == 201, response.text
    file = response.json()["data"]
    assert file["status"] in ("queued", "processing") and file["file_type"] == "pdf"
    done = api.wait_ingested(kb, file["id"])
    assert done["status"] == "ready", done
    assert done["pages_total"] == len(HANDBOOK_PAGES) and done["chunks_done"] == done["chunks_total"] > 0

    for query, page in [
        ("how many days of paid vacation do I get", 2),
        ("when are travel receipts reimbursed", 3),
        ("what to do when my laptop is lost", 4),
        ("parental leave for new parents", 5),
    ]:
        hits = api.search(query, top_k=3)
        assert hits, query
        top = hits[0]
        assert (top["file_name"], top["page"]) == ("handbook.pdf", page), (query, top)
        assert top["citation"]["chunk_id"] == top["chunk_id"] and top["kb_id"] == kb
    files = api.search("vacation", top_k=10, group_by="file")
    assert [h["file_name"] for h in files] == ["handbook.pdf"]  # one hit per file


def test_duplicate_download_and_delete(api):
    kb = api.create_kb()
    pdf = make_pdf(HANDBOOK_PAGES[:2])
    first = api.upload(kb, "a.pdf", pdf).json()["data"]
    again = api.upload(kb, "copy-of-a.pdf", pdf).json()
    assert again["data"]["id"] == first["id"] and again["data"]["duplicate"] is True
    api.wait_ingested(kb, first["id"])

    download = api.request("GET", f"/api/v1/knowledge-bases/{kb}/files/{first['id']}/download")
    assert download.status_code == 200 and download.content == pdf
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-disposition"].startswith("attachment")

    assert api.search("paid vacation days", top_k=5)
    deleted = api.request("DELETE", f"/api/v1/knowledge-bases/{kb}/files/{first['id']}")
    assert deleted.status_code == 200 and deleted.json()["data"] is None
    assert api.search("paid vacation days", top_k=5) == []
    gone = api.request("GET", f"/api/v1/knowledge-bases/{kb}/files/{first['id']}")
    assert gone.status_code == 404 and gone.json()["data"] is None and gone.json()["error"]
    blob = api.services.knowledge.blobs.path_for(first["sha256"])
    assert not blob.exists()
    assert api.request("DELETE", f"/api/v1/knowledge-bases/{kb}/files/{first['id']}").status_code == 404


def test_restart_keeps_knowledge_bases_files_and_vectors(settings, embedder):
    with open_api(settings, embedder) as api:
        kb = api.create_kb("persistent")
        file_id = api.upload(kb, "handbook.pdf", make_pdf(HANDBOOK_PAGES)).json()["data"]["id"]
        assert api.wait_ingested(kb, file_id)["status"] == "ready"
        before = api.search("parental leave weeks", top_k=3)
    with open_api(settings, embedder) as api:
        kbs = api.request("GET", "/api/v1/knowledge-bases").json()
        assert [k["name"] for k in kbs["data"]] == ["persistent"] and kbs["pagination"]["total"] == 1
        assert api.request("GET", f"/api/v1/knowledge-bases/{kb}/files/{file_id}").json()["data"]["status"] == "ready"
        after = api.search("parental leave weeks", top_k=3)
        assert [h["chunk_id"] for h in after] == [h["chunk_id"] for h in before]


def test_bad_uploads_get_clear_errors(api):
    kb = api.create_kb()
    binary = api.upload(kb, "notes.txt", b"\x00\x01\x02\x7fELF" * 200)
    assert binary.status_code == 415 and binary.json()["data"] is None and binary.json()["message"]
    empty = api.upload(kb, "empty.txt", b"")
    assert empty.status_code == 422
    not_multipart = api.request(
        "POST", f"/api/v1/knowledge-bases/{kb}/files", content=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert not_multipart.status_code == 415
    missing_kb = api.upload("kb_doesnotexist", "a.txt", b"hello world")
    assert missing_kb.status_code == 404


def test_upload_over_the_limit_is_413(tmp_path, embedder):
    from tests.api.conftest import make_settings

    settings = make_settings(tmp_path / "data", max_upload_bytes=64 * 1024)
    with open_api(settings, embedder) as api:
        kb = api.create_kb()
        big = api.upload(kb, "big.txt", b"a" * (3 * 1024 * 1024))
        assert big.status_code == 413 and big.json()["data"] is None
        just_over = api.upload(kb, "over.txt", b"word " * 14_000)  # 70 kB: under the body slack, over the file limit
        assert just_over.status_code == 413


def test_other_workspace_sees_nothing(api):
    kb = api.create_kb()
    file_id = api.upload(kb, "handbook.pdf", make_pdf(HANDBOOK_PAGES)).json()["data"]["id"]
    api.wait_ingested(kb, file_id)
    issued = api.call(
        lambda: api.services.access.create_user_token(
            workspace_name="other", user_name="mallory", role="admin", token_name="t"
        )
    )
    other = issued.secret
    assert api.request("GET", f"/api/v1/knowledge-bases/{kb}", token=other).status_code == 404
    assert api.request("GET", f"/api/v1/knowledge-bases/{kb}/files/{file_id}/download", token=other).status_code == 404
    response = api.request(
        "POST", "/api/v1/search", token=other, json={"query": "paid vacation", "kb_ids": [kb], "top_k": 10}
    )
    assert response.status_code == 200 and response.json()["data"] == []

"""Every malformed PDF in shared/eval/hostile-upstream, uploaded together with a valid file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers.pdfs import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.slow
HOSTILE = Path(__file__).resolve().parents[2].parent / "shared" / "eval" / "hostile-upstream"


@pytest.mark.skipif(not HOSTILE.is_dir(), reason="shared/eval/hostile-upstream is not beside the checkout")
def test_hostile_pdfs_fail_alone_and_the_valid_file_is_searchable(tmp_path, embedder):
    from tests.api.conftest import make_settings, open_api

    settings = make_settings(tmp_path / "data", parse_timeout_s=20.0, ingest_workers=2)
    pdfs = sorted(HOSTILE.rglob("*.pdf"))
    assert len(pdfs) > 40
    with open_api(settings, embedder) as api:
        kb = api.create_kb("hostile")
        files = [("file", (p.name, p.read_bytes())) for p in pdfs]
        files.append(("file", ("handbook.pdf", make_pdf(HANDBOOK_PAGES))))
        response = api.request("POST", f"/api/v1/knowledge-bases/{kb}/files", files=files)
        assert response.status_code == 201, response.text
        results = response.json()["data"]
        assert len(results) == len(files)
        accepted = {r["file"]["id"]: r["name"] for r in results if r["file"]}
        for refused in (r for r in results if not r["file"]):
            assert refused["error"] and refused["code"], refused  # refused at upload with a reason
        started = time.monotonic()
        final = {fid: api.wait_ingested(kb, fid, timeout_s=240) for fid in accepted}
        elapsed = time.monotonic() - started
        assert api.request("GET", "/health").status_code == 200
        for fid, info in final.items():
            if info["status"] == "failed":
                reason = info["error"] or ""
                assert reason and "Traceback" not in reason and len(reason) < 600, (accepted[fid], reason)
        handbook = next(fid for fid, name in accepted.items() if name == "handbook.pdf")
        assert final[handbook]["status"] == "ready"
        hits = api.search("paid parental leave weeks", top_k=3, kb_ids=[kb])
        assert hits and hits[0]["file_name"] == "handbook.pdf" and hits[0]["page"] == 5
        print(
            f"{len(pdfs)} hostile PDFs: {sum(i['status'] == 'ready' for i in final.values())} ready, "
            f"{sum(i['status'] == 'failed' for i in final.values())} failed, "
            f"{len(results) - len(accepted)} refused, drained in {elapsed:.1f}s"
        )

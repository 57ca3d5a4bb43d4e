"""Text files with a few stray NULs and control characters ingest end to end; real binaries stay refused.

Through the real API: upload (type sniffing), the sandboxed parse, the chunker, the embedded store.
"""

from __future__ import annotations

import random

import pytest

from tests.ingest.test_loaders import prose

pytestmark = pytest.mark.slow

_CONTROLS = {chr(c) for c in range(32) if chr(c) not in "\t\n"} | {chr(c) for c in range(0x7F, 0xA0)}


def _text_with_strays() -> bytes:
    data = prose(5000, seed=11)
    for position, raw in sorted(
        {150: b"\x00", 1900: b"\x00", 4100: b"\x00", 700: b"\x07", 2600: b"\x07", 3300: b"\x1b", 4600: b"\x1b"}.items(),
        reverse=True,
    ):
        data[position:position] = raw
    return bytes(data)


def _short_note() -> bytes:
    return b"\x00\x00Vacation policy: refunds within thirty days.\x07\nShipping takes five business days.\n"


@pytest.mark.parametrize("make", [_text_with_strays, _short_note], ids=["5 KB prose", "short note"])
def test_text_with_stray_controls_is_ingested_without_them(tmp_path, embedder, make) -> None:
    from tests.api.conftest import make_settings, open_api

    data = make()
    assert data.count(0) >= 2 and b"\x07" in data
    with open_api(make_settings(tmp_path / "data"), embedder) as api:
        kb = api.create_kb("strays")
        response = api.upload(kb, "notes.txt", data)
        assert response.status_code == 201, response.text
        file_id = response.json()["data"]["id"]
        info = api.wait_ingested(kb, file_id)
        assert info["status"] == "ready", info
        workspace = api.call(api.services.access.authenticate, api.token).workspace_id
        chunks = api.call(api.services.store.get_chunks, workspace, file_id, list(range(info["chunks_total"])))
        assert chunks
        text = " ".join(c.text for c in chunks)
        assert not _CONTROLS & set(text)
        assert "refunds" in text


def test_real_binary_is_still_refused_at_upload(tmp_path, embedder) -> None:
    from tests.api.conftest import make_settings, open_api

    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random.Random(5).randbytes(4000)
    noise = random.Random(6).randbytes(4000)
    with open_api(make_settings(tmp_path / "data"), embedder) as api:
        kb = api.create_kb("binaries")
        for name, payload in (("image.txt", png), ("noise.md", noise)):
            response = api.upload(kb, name, payload)
            assert response.status_code == 415, response.text
            assert "not text" in response.json()["message"]

"""The command line as a user runs it: ingest with a progress bar, search, reindex, optimize, token create."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.pdfs import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def ragline(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAGLINE_DATA_DIR": str(data_dir), "RAGLINE_TORCH_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_ingest_search_reindex_and_token(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "handbook.pdf").write_bytes(make_pdf(HANDBOOK_PAGES))
    (docs / "notes.md").write_text("# Office\n\nThe office closes at six on Fridays.\n")
    (docs / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    data = tmp_path / "data"

    ingest = ragline(data, "ingest", str(docs), "--kb", "handbook")
    assert ingest.returncode == 0, ingest.stderr
    assert "bootstrap admin token" in ingest.stdout
    assert "2/2 files" in ingest.stderr and "skipped" in ingest.stderr and "photo.png" in ingest.stderr

    search = ragline(data, "search", "how long is parental leave", "--kb", "handbook")
    assert search.returncode == 0, search.stderr
    first = search.stdout.splitlines()[0]
    assert "handbook.pdf p.5" in first and "sixteen weeks" in first

    reindex = ragline(data, "reindex")
    assert reindex.returncode == 0 and "re-indexing 2 files" in reindex.stdout
    again = ragline(data, "search", "when does the office close", "--kb", "handbook", "--mode", "sparse")
    assert "notes.md" in again.stdout.splitlines()[0]

    optimize = ragline(data, "optimize")
    assert optimize.returncode == 0 and "optimized in" in optimize.stdout, optimize.stderr
    after = ragline(data, "search", "how long is parental leave", "--kb", "handbook")
    assert after.stdout.splitlines()[0] == first  # same best hit, same score, after the segments are rebuilt

    token = ragline(data, "token", "create", "--workspace", "default", "--role", "viewer")
    assert token.returncode == 0 and token.stdout.strip().startswith("rl_")
    missing = ragline(data, "search", "x", "--kb", "nope")
    assert missing.returncode == 1 and "no knowledge base named 'nope'" in missing.stderr

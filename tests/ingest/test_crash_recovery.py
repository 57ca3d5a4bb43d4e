"""kill -9 the ingesting process at random moments; after a restart every invariant holds.

- every acknowledged upload exists with identical bytes;
- each file is ``ready`` with all its chunks searchable, or ``failed`` (after a restart nothing stays queued);
- no point in Qdrant belongs to an unknown file;
- unfinished files are never searchable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from api.container import open_services
from engine.db.models import File
from engine.settings import Settings
from engine.types import SearchFilters

pytestmark = [pytest.mark.crash, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(data_dir: Path, token: str, seed: int, kill_after_s: float) -> list[str]:
    """Start the driver, SIGKILL it ``kill_after_s`` after its first ACK; return the acknowledged ids."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.ingest_driver", str(data_dir), token, str(seed), "6"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RAGLINE_TORCH_THREADS": "1"},
    )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    acked: list[str] = []
    deadline: float | None = None
    try:
        while proc.poll() is None:
            with contextlib.suppress(queue.Empty):
                line = lines.get(timeout=0.02)
                if line.startswith("ACK "):
                    acked.append(line.split()[1])
                    deadline = deadline or time.monotonic() + kill_after_s
            if deadline and time.monotonic() >= deadline:
                break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)  # also when the test fails: never leave a driver running
    proc.wait(timeout=30)
    reader.join(timeout=5)
    while not lines.empty():  # ACKs printed just before the kill still count
        line = lines.get()
        if line.startswith("ACK "):
            acked.append(line.split()[1])
    return acked


async def check_invariants(data_dir: Path, token: str, embedder: object) -> dict[str, int]:
    settings = Settings.from_env({}, data_dir=data_dir, torch_threads=1, bootstrap_token=token)
    services = await open_services(settings, embedder=embedder)  # type: ignore[arg-type]
    try:
        await services.worker.recover()
        await services.worker.drain(timeout_s=300)
        async with services.sessions() as session:
            files = list(await session.scalars(select(File)))
        by_id = {f.id: f for f in files}
        originals = data_dir / "originals"
        for original in originals.iterdir() if originals.exists() else []:
            row = by_id.get(original.name)
            assert row is not None, f"acknowledged upload {original.name} lost"
            stored = services.knowledge.blobs.path_for(row.sha256).read_bytes()
            assert stored == original.read_bytes() and hashlib.sha256(stored).hexdigest() == row.sha256
        statuses: dict[str, int] = {}
        for row in files:
            statuses[row.status] = statuses.get(row.status, 0) + 1
            assert row.status in ("ready", "failed"), (row.id, row.status, row.error)
            visible = await services.store.count(SearchFilters(workspace_id=row.workspace_id, file_ids=(row.id,)))
            if row.status == "ready":
                assert visible == row.chunks_total > 0, (row.id, visible, row.chunks_total)
            else:
                assert visible == 0
        assert await services.store.file_ids() <= set(by_id), "points of unknown files remain"
        return statuses
    finally:
        await services.close()


def test_kill_9_during_ingest_loses_nothing(tmp_path, embedder):
    data_dir = tmp_path / "data"
    token = "rl_" + secrets.token_urlsafe(32)
    rng = random.Random(int(os.environ.get("RAGLINE_CRASH_SEED", "7")))
    total_acked: list[str] = []
    for round_no in range(3):
        acked = run_and_kill(data_dir, token, seed=round_no + 1, kill_after_s=rng.uniform(0.05, 6.0))
        total_acked += acked
        statuses = asyncio.run(check_invariants(data_dir, token, embedder))
        assert sum(statuses.values()) == len(total_acked)
    assert total_acked, "the driver never acknowledged an upload"

"""Infrastructure faults answer with the envelope and a precise status, fast, and leave nothing behind:
a locked or unreachable metadata database is a 503 with ``Retry-After``, a full disk during an upload a 507."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.util import greenlet_spawn

from engine.db.session import create_engine
from engine.settings import Settings
from tests.api.conftest import Api
from tests.helpers import postgres

sqlite_only = pytest.mark.skipif(bool(postgres.SERVER_URL), reason="SQLite file locks")
FAST_S = 5.0  # the old behaviour took 10 s (busy timeout) or 30 s (connect timeout) and then answered 500


def db_file(settings: Settings) -> Path:
    return settings.data_dir / "ragline.db"


def stored_files(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.files_dir.rglob("*") if p.is_file())


def assert_unavailable(response: Any, elapsed: float) -> None:
    assert response.status_code == 503, (response.status_code, response.text, elapsed)
    body = response.json()
    assert body["data"] is None and body["code"] == "database_unavailable", body
    assert body["error"] and body["message"] and body["request_id"] == response.headers["x-request-id"]
    assert int(response.headers["retry-after"]) >= 1
    assert elapsed < FAST_S, elapsed


def timed(api: Api, method: str, path: str, **kwargs: Any) -> tuple[Any, float]:
    started = time.monotonic()
    response = api.request(method, path, **kwargs)
    return response, time.monotonic() - started


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Another process holds the write lock (``BEGIN EXCLUSIVE``): in WAL mode readers go on, writers wait."""
    holder = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@contextlib.contextmanager
def whole_file_lock(api: Api, path: Path) -> Iterator[None]:
    """Another process holds the file exclusively (``locking_mode=EXCLUSIVE``, like a backup or a migration by
    hand): nobody can read or write until it lets go. An open WAL connection keeps a shared lock, so the app's idle
    pooled connections are closed first (the pool stays; its background loops may take one meanwhile: try again)
    and the app must open new ones while the lock is held."""

    async def close_idle_connections() -> None:
        await greenlet_spawn(api.services.db.sync_engine.pool.dispose)

    holder = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        for _ in range(50):
            api.call(close_idle_connections)
            with contextlib.suppress(sqlite3.OperationalError):
                holder.execute("BEGIN EXCLUSIVE")
                break
        holder.execute("SELECT count(*) FROM knowledge_bases").fetchall()  # fails unless the lock is ours
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()  # in WAL mode an exclusive-mode connection releases its lock only when it closes


@sqlite_only
def test_a_locked_database_is_a_fast_503_and_the_same_routes_work_once_it_is_released(
    api: Api, settings: Settings
) -> None:
    kb = api.create_kb("before")
    path = db_file(settings)
    with writer_lock(path):
        write, elapsed = timed(api, "POST", "/api/v1/knowledge-bases", json={"name": "during"})
        assert_unavailable(write, elapsed)
        read, elapsed = timed(api, "GET", f"/api/v1/knowledge-bases/{kb}")
        assert read.status_code == 200 and elapsed < FAST_S  # WAL: readers are not blocked by a writer
        upload, elapsed = timed(
            api,
            "POST",
            f"/api/v1/knowledge-bases/{kb}/files",
            files={"file": ("a.txt", b"stored, then refused by the database\n")},
        )
        assert_unavailable(upload, elapsed)
        assert stored_files(settings) == []  # the original it had already written is removed again
    with whole_file_lock(api, path):
        read, elapsed = timed(api, "GET", f"/api/v1/knowledge-bases/{kb}")
        assert_unavailable(read, elapsed)
        write, elapsed = timed(api, "POST", "/api/v1/knowledge-bases", json={"name": "during"})
        assert_unavailable(write, elapsed)
    created = api.request("POST", "/api/v1/knowledge-bases", json={"name": "after"})
    assert created.status_code == 201, created.text
    listed = api.request("GET", "/api/v1/knowledge-bases")
    assert listed.status_code == 200
    assert sorted(k["name"] for k in listed.json()["data"]) == ["after", "before"]  # nothing half-written


def test_the_busy_and_pool_timeouts_are_settings_and_their_failures_read_as_unavailable(tmp_path: Path) -> None:
    from engine.db.session import database_fault
    from engine.errors import Unavailable

    assert Settings.from_env({}).db_busy_timeout_s <= 2.0
    configured = Settings.from_env(
        {"RAGLINE_DB_BUSY_TIMEOUT_S": "0.25", "RAGLINE_DB_POOL_TIMEOUT_S": "0.25", "RAGLINE_DB_CONNECT_TIMEOUT_S": "1"}
    )
    assert (configured.db_busy_timeout_s, configured.db_pool_timeout_s, configured.db_connect_timeout_s) == (
        0.25, 0.25, 1.0,
    )  # fmt: skip
    path = tmp_path / "busy.db"

    async def locked_write() -> BaseException:
        db = create_engine(f"sqlite+aiosqlite:///{path}", busy_timeout_s=0.25)
        try:
            async with db.begin() as conn:
                await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            with writer_lock(path):
                started = time.monotonic()
                with pytest.raises(OperationalError) as caught:
                    async with db.begin() as conn:
                        await conn.execute(text("INSERT INTO t VALUES (1)"))
                assert time.monotonic() - started < 2.0
            return caught.value
        finally:
            await db.dispose()

    async def exhausted_pool() -> BaseException:
        db = create_engine(f"sqlite+aiosqlite:///{path}", pool_timeout_s=0.25)
        held = []
        try:
            with pytest.raises(Exception) as caught:
                for _ in range(64):
                    held.append(await db.connect())
            return caught.value
        finally:
            for conn in held:
                await conn.close()
            await db.dispose()

    for fault in (asyncio.run(locked_write()), asyncio.run(exhausted_pool())):
        mapped = database_fault(fault)
        assert isinstance(mapped, Unavailable) and mapped.code == "database_unavailable", repr(fault)
        assert mapped.retry_after >= 1


def test_an_unreachable_server_reads_as_unavailable() -> None:
    from engine.db.session import database_fault
    from engine.errors import StorageFull, Unavailable

    async def refused() -> BaseException:
        db = create_engine("postgresql+asyncpg://ragline:secret@127.0.0.1:1/ragline", connect_timeout_s=2)
        try:
            with pytest.raises(Exception) as caught:
                async with db.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return caught.value
        finally:
            await db.dispose()

    fault = asyncio.run(refused())
    assert isinstance(fault, OperationalError), repr(fault)
    mapped = database_fault(fault)
    assert isinstance(mapped, Unavailable) and mapped.code == "database_unavailable"
    full = OperationalError("INSERT INTO files ...", {}, sqlite3.OperationalError("database or disk is full"))
    assert isinstance(database_fault(full), StorageFull)
    assert database_fault(OperationalError("SELECT nope", {}, sqlite3.OperationalError("no such table: x"))) is None
    assert database_fault(ValueError("not a database error")) is None


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Every file this process writes stops at ``limit`` bytes (EFBIG; SIGXFSZ ignored instead of killing us)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_full_disk_during_an_upload_is_a_507_that_leaves_nothing_behind(api: Api, settings: Settings) -> None:
    kb = api.create_kb()
    data = b"".join(b"line %06d of a document that does not fit on the disk\n" % n for n in range(10_000))
    assert 256 * 1024 < len(data) < 1024 * 1024  # over the limit, under Litestar's in-memory spool size
    before = stored_files(settings)
    with file_size_limit(256 * 1024):
        response = api.upload(kb, "big.txt", data)
    assert response.status_code == 507, response.text
    body = response.json()
    assert body["data"] is None and body["code"] == "insufficient_storage", body
    assert body["error"] and body["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert stored_files(settings) == before == []  # no temp file, no partial blob
    listed = api.request("GET", f"/api/v1/knowledge-bases/{kb}/files")
    assert listed.status_code == 200 and listed.json()["pagination"]["total"] == 0  # no file row, no queued job
    # several files in one request: each refused one says why; the request itself stands
    with file_size_limit(256 * 1024):
        many = api.request(
            "POST", f"/api/v1/knowledge-bases/{kb}/files", files=[("file", ("a.txt", data)), ("file", ("b.txt", data))]
        )
    assert many.status_code == 201, many.text
    assert [r["code"] for r in many.json()["data"]] == ["insufficient_storage", "insufficient_storage"]
    assert stored_files(settings) == []
    # the same when the multipart parser's own spool file (uploads over 1 MiB) is the one that cannot grow
    with file_size_limit(256 * 1024):
        spooled = api.upload(kb, "bigger.txt", data * 3)
    assert spooled.status_code == 507, spooled.text
    assert spooled.json()["code"] == "insufficient_storage"
    assert stored_files(settings) == []
    assert api.request("GET", f"/api/v1/knowledge-bases/{kb}/files").json()["pagination"]["total"] == 0
    # the limit lifted, uploads succeed again and are ingested
    retried = api.upload(kb, "notes.txt", b"The limit is lifted: this upload is stored and ingested.\n")
    assert retried.status_code == 201, retried.text
    assert api.wait_ingested(kb, retried.json()["data"]["id"])["status"] == "ready"
    assert len(stored_files(settings)) == 1

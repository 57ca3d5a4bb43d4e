"""The ingest worker: a durable queue (the ``files`` table) drained by tasks off the event loop.

Each file: load the original, parse it in a sandboxed child process (time and memory budget),
chunk, embed in batches, upsert hidden points, then publish them and mark the file ``ready`` in
one step. Parse failures fail the file at once; transient errors retry with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

import anyio.to_thread
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.db.models import File, now
from engine.errors import EngineError, Unavailable
from engine.ports import Embedder, SparseEncoder, VectorStore
from engine.types import ChunkRecord, VectorPoint
from ingest.blobs import BlobStore
from ingest.chunking import ChunkDraft, chunk_document
from ingest.parsed import ParseFailure
from ingest.sandbox import parse_in_sandbox

log = logging.getLogger("ragline.ingest")

EMBED_BATCH = 32
POLL_INTERVAL_S = 1.0


class PermanentFailure(Exception):
    """The file itself is the problem: retrying cannot help."""


@dataclass(frozen=True)
class IngestConfig:
    chunk_tokens: int = 200
    chunk_overlap: int = 40
    max_chunks: int = 20_000
    parse_timeout_s: float = 60.0
    parse_memory_mb: int = 1536
    max_attempts: int = 3
    workers: int = 1


def chunk_id(file_id: str, ordinal: int) -> str:
    """Deterministic point id: re-ingesting a file replaces its points instead of duplicating them."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ragline:{file_id}:{ordinal}"))


class IngestWorker:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        blobs: BlobStore,
        store: VectorStore,
        embedder: Embedder,
        sparse: SparseEncoder,
        config: IngestConfig,
    ) -> None:
        self.sessions = sessions
        self.blobs = blobs
        self.store = store
        self.embedder = embedder
        self.sparse = sparse
        self.config = config
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def notify(self) -> None:
        """Wake idle workers (called after an upload is committed)."""
        self._wake.set()

    async def recover(self) -> None:
        """After a crash: unfinished files go back to the queue; points of unknown files are removed."""
        async with self.sessions() as session:
            await session.execute(
                update(File).where(File.status == "processing").values(status="queued", next_attempt_at=0.0)
            )
            await session.commit()
            known = set(await session.scalars(select(File.id)))
        try:
            orphans = await self.store.file_ids() - known
            if orphans:
                log.warning("removing points of %d files unknown to the metadata store", len(orphans))
                await self.store.purge_files(sorted(orphans))
        except Unavailable as exc:  # start anyway: search answers 503, uploads wait, the sweep runs next start
            log.warning("vector store unavailable at start (%s): skipping the orphan sweep", exc.message)
        await anyio.to_thread.run_sync(self.blobs.clean_tmp)

    def start(self) -> None:
        self._stopping = False
        for n in range(self.config.workers):
            self._tasks.append(asyncio.create_task(self._run(), name=f"ingest-worker-{n}"))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                file_id = await self._claim()
            except Exception:
                log.exception("ingest queue unavailable")
                file_id = None
            if file_id is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL_S)
                continue
            await self.process(file_id)

    async def drain(self, timeout_s: float = 300.0) -> None:
        """Process queued files until none is left (CLI and tests; the server uses ``start``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            file_id = await self._claim()
            if file_id is not None:
                await self.process(file_id)
                continue
            async with self.sessions() as session:
                pending = await session.scalar(
                    select(File.id).where(File.status.in_(("queued", "processing"))).limit(1)
                )
            if pending is None:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError("ingest queue did not drain in time")

    async def _claim(self) -> str | None:
        async with self.sessions() as session:
            candidate = await session.scalar(
                select(File.id)
                .where(File.status == "queued", File.next_attempt_at <= now())
                .order_by(File.created_at)
                .limit(1)
            )
            if candidate is None:
                return None
            result = await session.execute(
                update(File)
                .where(File.id == candidate, File.status == "queued")
                .values(status="processing", started_at=now(), updated_at=now(), attempts=File.attempts + 1)
            )
            await session.commit()
            return candidate if getattr(result, "rowcount", 0) == 1 else None

    async def process(self, file_id: str) -> None:
        async with self.sessions() as session:
            row = await session.get(File, file_id)
            if row is None:
                return
            file = _FileJob(row)
        try:
            await self._ingest(file)
        except PermanentFailure as exc:
            await self._fail(file, str(exc), retry=False)
        except asyncio.CancelledError:
            raise
        except Unavailable as exc:  # the store is down: the file waits, its attempts untouched
            await self._postpone(file, exc)
        except EngineError as exc:
            await self._fail(file, exc.message, retry=False)
        except Exception as exc:
            log.exception("ingest of %s failed", file.id)
            await self._fail(file, f"temporary error: {type(exc).__name__}: {exc}"[:500], retry=True)

    async def _ingest(self, file: _FileJob) -> None:
        started = time.perf_counter()
        data = await anyio.to_thread.run_sync(self.blobs.read, file.sha256)
        parsed = await anyio.to_thread.run_sync(
            lambda: parse_in_sandbox(
                data, file.file_type, timeout_s=self.config.parse_timeout_s, memory_mb=self.config.parse_memory_mb
            )
        )
        if isinstance(parsed, ParseFailure):
            raise PermanentFailure(parsed.reason)
        drafts = await anyio.to_thread.run_sync(
            lambda: chunk_document(
                parsed,
                chunk_tokens=self.config.chunk_tokens,
                overlap=self.config.chunk_overlap,
                max_chunks=self.config.max_chunks,
                # the document's own title beats its file name; a bare id like "4983.md" is noise
                title=parsed.title or PurePath(file.name).stem,
                window=self.embedder,
            )
        )
        if not drafts:  # nothing with a letter or digit in it: nothing search could find
            detail = "; ".join(w for w in parsed.warnings if w.startswith("text layer looks broken"))
            raise PermanentFailure(f"the file contains no text ({detail})" if detail else "the file contains no text")
        parse_ms = (time.perf_counter() - started) * 1000
        await self._progress(
            file.id,
            pages_total=parsed.pages_total,
            pages_done=parsed.pages_total,
            chunks_total=len(drafts),
            chunks_done=0,
            parse_ms=parse_ms,
            warnings=list(parsed.warnings),
        )
        # a previous attempt may have left points with higher ordinals: start clean
        await self.store.delete_file(file.workspace_id, file.id)
        embed_started = time.perf_counter()
        for offset in range(0, len(drafts), EMBED_BATCH):
            batch = drafts[offset : offset + EMBED_BATCH]
            await self.store.upsert(await self._points(file, batch))
            done = offset + len(batch)
            if not await self._progress(file.id, chunks_done=done):
                await self.store.delete_file(file.workspace_id, file.id)  # deleted while we worked: delete wins
                return
        embed_ms = (time.perf_counter() - embed_started) * 1000
        await self._catch_up_labels(file)
        await self.store.publish_file(file.workspace_id, file.id)
        if not await self._finish(file.id, embed_ms=embed_ms):
            await self.store.delete_file(file.workspace_id, file.id)

    async def _points(self, file: _FileJob, batch: Sequence[ChunkDraft]) -> list[VectorPoint]:
        # vectors from the normalised embed_text; the payload keeps the original text for display and quotes
        dense = await self.embedder.embed_documents([d.embed_text for d in batch])
        sparse = await anyio.to_thread.run_sync(self.sparse.encode_documents, [d.embed_text for d in batch])
        points = []
        for draft, vector, sparse_vector in zip(batch, dense, sparse, strict=True):
            record = ChunkRecord(
                id=chunk_id(file.id, draft.ordinal),
                workspace_id=file.workspace_id,
                kb_id=file.kb_id,
                file_id=file.id,
                file_name=file.name,
                file_type=file.file_type,
                ordinal=draft.ordinal,
                text=draft.text,
                page=draft.page,
                heading_path=tuple(draft.heading_path),
                char_start=draft.char_start,
                char_end=draft.char_end,
                tags=tuple(file.tags),
                created_at=file.created_at,
                metadata=file.metadata,
            )
            points.append(VectorPoint(chunk=record, dense=vector, sparse=sparse_vector))
        return points

    async def _catch_up_labels(self, file: _FileJob) -> None:
        """Tags or metadata edited while this job embedded (its points carry the old ones): set the new ones.

        ``KnowledgeService.update_file`` commits the row before it relabels the points, so either its relabel
        comes after our last upsert, or this read sees its commit.
        """
        async with self.sessions() as session:
            row = await session.get(File, file.id)
        if row is not None and (list(row.tags or []) != file.tags or dict(row.meta or {}) != file.metadata):
            await self.store.relabel_file(file.workspace_id, file.id, tags=row.tags or [], metadata=row.meta or {})

    async def _progress(self, file_id: str, **values: object) -> bool:
        """Update progress; False when the file was deleted meanwhile."""
        async with self.sessions() as session:
            result = await session.execute(
                update(File).where(File.id == file_id, File.status == "processing").values(updated_at=now(), **values)
            )
            await session.commit()
            return getattr(result, "rowcount", 0) == 1

    async def _finish(self, file_id: str, *, embed_ms: float) -> bool:
        return await self._progress(file_id, status="ready", error=None, embed_ms=embed_ms, finished_at=now())

    async def _postpone(self, file: _FileJob, exc: Unavailable) -> None:
        log.warning("ingest of %s waits: %s", file.id, exc.message)
        async with self.sessions() as session:
            await session.execute(update(File).where(File.id == file.id).values(
                status="queued", attempts=File.attempts - 1, next_attempt_at=now() + exc.retry_after,
                error=f"waiting: {exc.message}"[:500], updated_at=now(),
            ))  # fmt: skip
            await session.commit()

    async def _fail(self, file: _FileJob, reason: str, *, retry: bool) -> None:
        with contextlib.suppress(Exception):
            await self.store.delete_file(file.workspace_id, file.id)
        async with self.sessions() as session:
            row = await session.get(File, file.id)
            if row is None:
                return
            if retry and row.attempts < self.config.max_attempts:
                row.status, row.next_attempt_at = "queued", now() + 2.0**row.attempts
            else:
                row.status, row.finished_at = "failed", now()
            row.error, row.updated_at = reason, now()
            await session.commit()


class _FileJob:
    """The fields of a file row a job needs, detached from the session."""

    def __init__(self, row: File) -> None:
        self.id = row.id
        self.workspace_id = row.workspace_id
        self.kb_id = row.kb_id
        self.name = row.name
        self.sha256 = row.sha256
        self.file_type = row.file_type
        self.tags = list(row.tags or [])
        self.metadata = dict(row.meta or {})
        self.created_at = row.created_at

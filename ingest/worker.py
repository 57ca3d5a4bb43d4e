"""The ingest worker: a durable queue (the ``files`` table, ``ingest.queue``) drained by a pipeline off the event loop.

Each file: load the original, parse it (``ingest.sandbox.parse_untrusted``: in a child process with a time and
memory budget unless it is a small text or Markdown file), chunk,
embed, upsert hidden points, then publish them and mark the file ``ready`` in one step. Parse failures
fail the file at once; transient errors retry with exponential backoff.

Three stages run at once (see ``ingest.pipeline``): preparers claim, parse and chunk files; one embed loop
runs the model on batches that fill across files; one writer stores each batch's points, writes progress
and finishes the files that are complete, in one SQL transaction per batch. So the model never waits for a
parse or a commit, and a corpus of short files is embedded in full batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.aio import wait_until_set
from engine.db.models import File, now
from engine.errors import EngineError, Unavailable
from engine.ports import Embedder, SparseEncoder, VectorStore
from ingest import queue
from ingest.blobs import BlobStore
from ingest.claims import Claimer
from ingest.pipeline import Batch, FileJob, Job, chunk_id, take_batch, vector_points, waiting_chunks
from ingest.prepare import IngestConfig, PermanentFailure, parse_and_chunk
from ingest.queue import Labels

log = logging.getLogger("ragline.ingest")
__all__ = ["EMBED_BATCH", "IngestWorker", "chunk_id"]

# Chunks per embedding call. The int8 model's throughput is flat from 32 up (stack-findings §2); the
# batch fills across files, so a corpus of short files gets full batches too.
EMBED_BATCH = 32
POLL_INTERVAL_S = 1.0
# Parsed files waiting for the embedder: enough small files to fill a few batches ahead.
PREPARED_AHEAD = 4 * EMBED_BATCH
# Chunks parsed and waiting for the embedder before the preparers claim more files. Four batches (about a
# second of embedding) keep the model busy through a claim and a parse; claiming no earlier lets files that
# upload meanwhile go in one claim (``ingest.claims``) instead of one statement each.
AHEAD_CHUNKS = 4 * EMBED_BATCH


class DedicatedPath(Protocol):
    """Ingests the files of knowledge bases that have a collection of their own (``ingest.indexes.DedicatedIngest``)."""

    async def kbs_with_own_index(self, kb_ids: Collection[str]) -> set[str]:
        """Which of ``kb_ids`` have a live collection of their own (one read for a whole claim)."""
        ...

    async def __call__(self, file: FileJob, progress: Callable[..., Awaitable[bool]]) -> int | None:
        """None when the file's knowledge base has no collection of its own now (the pipeline below ingests
        it), else the chunk count (-1: deleted meanwhile)."""
        ...


FileListener = Callable[[str, str, dict[str, Any]], None]
"""Told ``(workspace_id, "file.ready" | "file.failed", details)`` once a file's final status is committed; it must
not block (the workspace event log queues it)."""


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
        on_file_done: FileListener | None = None,
        dedicated: DedicatedPath | None = None,
    ) -> None:
        self.sessions = sessions
        self.on_file_done = on_file_done
        self.dedicated = dedicated
        self.blobs = blobs
        self.store = store
        self.embedder = embedder
        self.sparse = sparse
        self.config = config
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._writing: asyncio.Future[None] | None = None  # the batch being written, which ``stop`` lets finish
        self._stopping = False
        self._prepared: asyncio.Queue[Job] = asyncio.Queue(PREPARED_AHEAD)
        self._embedded: asyncio.Queue[Batch] = asyncio.Queue(2)
        own_index = dedicated.kbs_with_own_index if dedicated is not None else None
        self._claimer = Claimer(sessions, own_index, poll_interval_s=POLL_INTERVAL_S)
        self._embedding: deque[Job] = deque()  # parsed jobs the embed loop has taken from ``_prepared``
        self._queued_chunks = 0  # chunks of the jobs in ``_prepared``
        self._hungry = asyncio.Event()  # set while fewer than AHEAD_CHUNKS chunks wait for the embedder
        self._hungry.set()

    def notify(self) -> None:
        """Wake idle workers (called after an upload is committed)."""
        self._claimer.notice()
        self._wake.set()

    async def recover(self) -> None:
        """After a crash: unfinished files go back to the queue; points of unknown files are removed."""
        async with self.sessions() as session:
            await queue.requeue_processing(session)
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
        # Two preparers keep the queue ahead of the model while one of them waits on a parse child.
        for n in range(max(2, self.config.workers)):
            self._tasks.append(asyncio.create_task(self._prepare_loop(), name=f"ingest-prepare-{n}"))
        self._tasks.append(asyncio.create_task(self._embed_loop(), name="ingest-embed"))
        self._tasks.append(asyncio.create_task(self._write_loop(), name="ingest-write"))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._writing is not None:
            try:
                await self._writing
            except Exception:  # its files stay "processing" and are requeued at the next start: stopping goes on
                log.exception("the batch being written when the ingest worker stopped failed")
            self._writing = None
        # files in flight stay "processing": ``recover`` requeues them on the next start
        self._prepared = asyncio.Queue(PREPARED_AHEAD)
        self._embedded = asyncio.Queue(2)
        self._claimer.reset()
        self._embedding.clear()
        self._queued_chunks = 0
        self._hungry.set()

    async def drain(self, timeout_s: float = 300.0) -> None:
        """Process queued files until none is left (CLI and tests; the server uses ``start``)."""
        owned = not self._tasks
        if owned:
            self.start()
        try:
            deadline = time.monotonic() + timeout_s
            while await self._pending():
                if time.monotonic() >= deadline:
                    raise TimeoutError("ingest queue did not drain in time")
                for task in self._tasks:
                    if task.done() and not task.cancelled() and (crashed := task.exception()) is not None:
                        raise crashed
                await asyncio.sleep(0.1)
        finally:
            if owned:
                await self.stop()

    async def _pending(self) -> bool:
        async with self.sessions() as session:
            return await queue.any_unfinished(session)

    # -- stage 1: claim, parse, chunk ------------------------------------------------------------

    async def _prepare_loop(self) -> None:
        while not self._stopping:
            await self._until_hungry()
            self._wake.clear()  # before the claim: an upload told while it runs wakes the wait below at once
            try:
                file = await self._claimer.next()
            except Exception:
                log.exception("ingest queue unavailable")
                file = None
            if file is None:
                await wait_until_set(self._wake, POLL_INTERVAL_S)
                continue
            job = await self._guarded(file, self._prepare(file))
            if job is not None:
                self._queued_chunks += len(job.drafts)
                await self._prepared.put(job)

    def _chunks_ahead(self) -> int:
        return self._queued_chunks + waiting_chunks(self._embedding)

    async def _until_hungry(self) -> None:
        """Wait while the embedder has enough work ahead and no claimed file waits to be prepared."""
        while not self._claimer.holding and self._chunks_ahead() >= AHEAD_CHUNKS:
            self._hungry.clear()
            await self._hungry.wait()

    async def _prepare(self, file: FileJob) -> Job | None:
        if self.dedicated is not None and file.own_index:  # a knowledge base with an index of its own (#19)
            chunks = await self.dedicated(file, self._progress)
            if chunks is not None:
                if chunks >= 0:
                    self._tell(file, "file.ready", chunks=chunks)
                return None
        started = time.perf_counter()
        data = await anyio.to_thread.run_sync(self.blobs.read, file.sha256)
        parsed, drafts = await anyio.to_thread.run_sync(
            lambda: parse_and_chunk(data, file.file_type, file.name, config=self.config, window=self.embedder)
        )
        progress = {
            "pages_total": parsed.pages_total, "pages_done": parsed.pages_total, "chunks_total": len(drafts),
            "parse_ms": (time.perf_counter() - started) * 1000, "warnings": list(parsed.warnings),
        }  # fmt: skip
        if len(drafts) <= EMBED_BATCH:  # done within a batch or two: these go with its final status (one commit)
            job = Job(file, drafts, deferred=progress)
        elif await self._progress(file.id, chunks_done=0, **progress):
            job = Job(file, drafts)
        else:
            return None  # deleted meanwhile
        if not file.fresh:  # a previous attempt may have left points with higher ordinals: start clean
            await self.store.delete_file(file.workspace_id, file.id)
        return job

    # -- stage 2: embed in batches that fill across files ----------------------------------------

    async def _embed_loop(self) -> None:
        pending = self._embedding
        while True:
            if not pending:
                pending.append(self._took(await self._prepared.get()))
            while waiting_chunks(pending) < EMBED_BATCH and not self._prepared.empty():
                pending.append(self._took(self._prepared.get_nowait()))  # take what is ready now; never wait for more
            batch = take_batch(pending, EMBED_BATCH)
            if self._chunks_ahead() < AHEAD_CHUNKS:
                self._hungry.set()
            if not batch.slices:
                continue
            try:
                batch.dense = await self.embedder.embed_documents(batch.texts)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                for job in batch.jobs:
                    await self._give_up(job, exc)
                continue
            await self._embedded.put(batch)

    def _took(self, job: Job) -> Job:
        self._queued_chunks -= len(job.drafts)
        return job

    # -- stage 3: store points, write progress, publish and finish complete files ----------------

    async def _write_loop(self) -> None:
        while True:
            batch = await self._embedded.get()
            # ``stop`` cancels this loop, not the write in progress: cut between its upsert and its record, the
            # points of a file deleted meanwhile (only the record step removes them) would stay until the next start.
            self._writing = asyncio.ensure_future(self._write(batch))
            await asyncio.shield(self._writing)
            self._writing = None

    async def _write(self, batch: Batch) -> None:
        live = [s for s in batch.slices if not s.job.cancelled]
        if not live:
            return
        try:
            await self._store_points(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for job in batch.jobs:
                await self._give_up(job, exc)
            return
        jobs = [job for job in batch.jobs if not job.cancelled]
        await self._record(jobs)

    async def _store_points(self, batch: Batch) -> None:
        pieces = [(piece, dense) for piece, dense in batch.pieces() if not piece.job.cancelled]
        texts = [draft.embed_text for piece, _ in pieces for draft in piece.drafts]
        sparse = await anyio.to_thread.run_sync(self.sparse.encode_documents, texts)
        await self.store.upsert(vector_points(pieces, sparse))
        for piece, _ in pieces:
            piece.job.written = piece.end

    async def _record(self, jobs: Sequence[Job]) -> None:
        """Progress of unfinished files and the labels of finished ones, in one transaction; then publish."""
        done = [job for job in jobs if job.complete]
        deleted: list[Job] = []
        async with self.sessions() as session:
            for job in jobs:
                if not job.complete and not await queue.set_progress(session, job.file.id, chunks_done=job.written):
                    deleted.append(job)
            labels = await queue.current_labels(session, [job.file.id for job in done])
            await session.commit()
        for job in [*deleted, *(j for j in done if j.file.id not in labels)]:
            await self._drop_deleted(job)  # deleted while we worked: delete wins
        done = [job for job in done if job.file.id in labels]
        await self._publish(done, labels)
        finished = [job for job in done if not job.cancelled]
        if not finished:
            return
        final = [(job.file.id, {"error": None, "embed_ms": _ms_since(job.embed_started), "finished_at": now(),
                                "chunks_done": job.written, **job.deferred}) for job in finished]  # fmt: skip
        async with self.sessions() as session:
            ready = await queue.finish(session, final)
            await session.commit()
        stale = [job for job in finished if job.file.id not in ready]
        for job in stale:
            await self._drop_deleted(job)
        self._tell_ready([job for job in finished if job.file.id in ready])

    def _tell_ready(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._tell(job.file, "file.ready", chunks=len(job.drafts))

    def _tell(self, file: FileJob, event_type: str, **details: Any) -> None:
        if self.on_file_done is None:
            return
        try:
            payload = {"file_id": file.id, "kb_id": file.kb_id, "name": file.name, **details}
            self.on_file_done(file.workspace_id, event_type, payload)
        except Exception:  # the event log is told, never in charge: ingest goes on
            log.exception("could not report %s for %s", event_type, file.id)

    async def _publish(self, jobs: Sequence[Job], labels: dict[str, Labels]) -> None:
        """Make finished files searchable: one store operation per workspace, not one per file (each is a store
        write and a lookup of the workspace's collections). A failure fails the files it covered.

        Tags or metadata edited while a job embedded (its points carry the old ones) are set first.
        ``KnowledgeService.update_file`` commits the row before it relabels the points, so either its relabel
        comes after our last upsert, or the read in ``_record`` sees its commit.
        """
        for job in jobs:
            file, (tags, metadata) = job.file, labels[job.file.id]
            if tags != file.tags or metadata != file.metadata:
                await self._or_give_up([job], self.store.relabel_file(file.workspace_id, file.id, tags=tags,
                                                                      metadata=metadata))  # fmt: skip
        by_workspace: dict[str, list[Job]] = {}
        for job in jobs:
            if not job.cancelled:
                by_workspace.setdefault(job.file.workspace_id, []).append(job)
        for workspace_id, group in by_workspace.items():
            await self._or_give_up(group, self.store.publish_files(workspace_id, [job.file.id for job in group]))

    async def _or_give_up(self, jobs: Sequence[Job], step: Awaitable[None]) -> None:
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for job in jobs:
                await self._give_up(job, exc)

    async def _drop_deleted(self, job: Job) -> None:
        job.cancelled = True
        with contextlib.suppress(Exception):
            await self.store.delete_file(job.file.workspace_id, job.file.id)

    # -- failures ---------------------------------------------------------------------------------

    async def _guarded(self, file: FileJob, step: Awaitable[Job | None]) -> Job | None:
        try:
            return await step
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._handle(file, exc)
            return None

    async def _give_up(self, job: Job, exc: Exception) -> None:
        if not job.cancelled:
            job.cancelled = True
            await self._handle(job.file, exc)

    async def _handle(self, file: FileJob, exc: Exception) -> None:
        if isinstance(exc, PermanentFailure):
            await self._fail(file, str(exc), retry=False)
        elif isinstance(exc, Unavailable):  # the store is down: the file waits, its attempts untouched
            await self._postpone(file, exc)
        elif isinstance(exc, EngineError):
            await self._fail(file, exc.message, retry=False)
        else:
            log.error("ingest of %s failed", file.id, exc_info=exc)
            await self._fail(file, f"temporary error: {type(exc).__name__}: {exc}"[:500], retry=True)

    async def _progress(self, file_id: str, **values: object) -> bool:
        """Update progress; False when the file was deleted meanwhile."""
        async with self.sessions() as session:
            updated = await queue.set_progress(session, file_id, **values)
            await session.commit()
            return updated

    async def _postpone(self, file: FileJob, exc: Unavailable) -> None:
        log.warning("ingest of %s waits: %s", file.id, exc.message)
        async with self.sessions() as session:
            await queue.postpone(session, file.id, f"waiting: {exc.message}", exc.retry_after)
            await session.commit()

    async def _fail(self, file: FileJob, reason: str, *, retry: bool) -> None:
        with contextlib.suppress(Exception):
            await self.store.delete_file(file.workspace_id, file.id)
        async with self.sessions() as session:
            failed = await queue.fail(session, file.id, reason, retry=retry, max_attempts=self.config.max_attempts)
            await session.commit()
        if failed:
            self._tell(file, "file.failed", error=reason)


def _ms_since(started: float | None) -> float:
    return (time.perf_counter() - started) * 1000 if started is not None else 0.0

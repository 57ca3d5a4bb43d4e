"""Knowledge bases' own indexes: the pointers in SQL (``kb_collections``) and writing a file into an index.

``SqlIndexDirectory`` is the ``engine.routing.IndexDirectory`` of the app. A workspace's routes are read from
the metadata database and kept for at most ``ttl_s`` (1 s); every change this process makes (a swap, a new
collection) drops the cached reading at once, so in the usual one-process deployment (the embedded store has a
single owner) every search after a swap reads the new pointer. Another process sharing a Qdrant server and
PostgreSQL sees it within ``ttl_s``, well inside the grace period during which the old collection still answers.

``embed_file_into`` writes one stored file into an index with that index's embedder and chunking: the ingest
worker uses it for knowledge bases that have a collection of their own, an index switch to fill its new one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace
from typing import Any, Protocol

import anyio.to_thread
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.db.models import File, KbCollection, KnowledgeBase, now
from engine.ports import Collections, Embedder, SparseEncoder, VectorStore
from engine.routing import Index, WorkspaceRoutes
from ingest.blobs import BlobStore
from ingest.pipeline import FileJob, Job, Slice, vector_points
from ingest.prepare import IngestConfig, parse_and_chunk
from ingest.worker import EMBED_BATCH

log = logging.getLogger("ragline.ingest")
ROUTES_TTL_S = 1.0
HOLDING = ("building", "live", "retired")  # states whose collection exists and may hold points


class EmbedderSource(Protocol):
    """What the directory needs of ``engine.embedders.EmbedderCatalog``: the names offered, an embedder by name
    (blocking: the first use of a model reads its configs)."""

    def names(self) -> list[str]: ...

    def get(self, name: str) -> Embedder: ...


@dataclass(frozen=True)
class _Cached:
    routes: WorkspaceRoutes
    at: float


class SqlIndexDirectory:
    """The pointers of every knowledge base with a collection of its own, and those collections' stores."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], collections: Collections, embedders: EmbedderSource, *,
        ttl_s: float = ROUTES_TTL_S,
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.collections = collections
        self.embedders = embedders
        self.ttl_s = ttl_s
        self._cache: dict[str, _Cached] = {}
        self._generation = 0  # bumped by every invalidate: a reading begun before one is not cached
        self._indexes: dict[str, Index] = {}  # collection name -> index (rows of a name never change)

    def invalidate(self, workspace_id: str | None = None) -> None:
        """Forget cached routes (after this process changed a pointer)."""
        self._generation += 1
        if workspace_id is None:
            self._cache.clear()
        else:
            self._cache.pop(workspace_id, None)

    async def routes(self, workspace_id: str) -> WorkspaceRoutes:
        cached = self._cache.get(workspace_id)
        if cached is not None and time.monotonic() - cached.at < self.ttl_s:
            return cached.routes
        generation = self._generation
        async with self.sessions() as session:
            live = list(await session.scalars(
                select(KbCollection).where(KbCollection.workspace_id == workspace_id, KbCollection.state == "live")
            ))  # fmt: skip
            kb_ids: tuple[str, ...] = ()
            if live:  # only then does a search need the workspace's other knowledge bases
                kb_ids = tuple(await session.scalars(
                    select(KnowledgeBase.id).where(KnowledgeBase.workspace_id == workspace_id)
                ))  # fmt: skip
        dedicated = {row.kb_id: await self.index(row) for row in live}
        routes = WorkspaceRoutes(kb_ids=kb_ids, dedicated=dedicated)
        if generation == self._generation:  # else a pointer changed while this read ran: it may be stale
            self._cache[workspace_id] = _Cached(routes, time.monotonic())
        return routes

    async def index(self, row: KbCollection) -> Index:
        """The index of a collection row (its embedder loaded once, its store opened once)."""
        index = self._indexes.get(row.name)
        if index is None:
            embedder = await anyio.to_thread.run_sync(self.embedders.get, row.embedder)
            store = await anyio.to_thread.run_sync(self.collections.open, row.name, row.dim)
            index = self._indexes[row.name] = Index(
                collection=row.name, embedder_name=row.embedder, embedder=embedder, store=store,
                chunk_tokens=row.chunk_tokens, chunk_overlap=row.chunk_overlap,
            )  # fmt: skip
        return index

    async def live_index(self, workspace_id: str, kb_id: str) -> Index | None:
        """The knowledge base's live index, read now (None: it lives in the default collection)."""
        async with self.sessions() as session:
            row = await session.scalar(
                select(KbCollection).where(KbCollection.kb_id == kb_id, KbCollection.workspace_id == workspace_id,
                                           KbCollection.state == "live")
            )  # fmt: skip
        return await self.index(row) if row is not None else None

    async def kbs_with_live_index(self, kb_ids: Collection[str]) -> set[str]:
        """Which of ``kb_ids`` have a live collection of their own, read now."""
        if not kb_ids:
            return set()
        async with self.sessions() as session:
            return set(await session.scalars(
                select(KbCollection.kb_id).where(KbCollection.kb_id.in_(list(kb_ids)), KbCollection.state == "live")
            ))  # fmt: skip

    async def _rows(self, *where: Any) -> list[KbCollection]:
        async with self.sessions() as session:
            return list(await session.scalars(select(KbCollection).where(KbCollection.state.in_(HOLDING), *where)))

    async def write_targets(self, workspace_id: str) -> list[VectorStore]:
        return [(await self.index(row)).store for row in await self._rows(KbCollection.workspace_id == workspace_id)]

    async def all_stores(self) -> list[VectorStore]:
        return [(await self.index(row)).store for row in await self._rows()]

    async def drop_kb(self, workspace_id: str, kb_id: str) -> None:
        rows = await self._rows(KbCollection.workspace_id == workspace_id, KbCollection.kb_id == kb_id)
        for row in rows:
            await self.drop(row.name)
        self.invalidate(workspace_id)

    async def drop(self, name: str) -> None:
        """Drop a collection and mark its row ``dropped``."""
        self._indexes.pop(name, None)
        await self.collections.drop(name)
        async with self.sessions() as session:
            await session.execute(
                update(KbCollection).where(KbCollection.name == name).values(state="dropped", updated_at=now())
            )
            await session.commit()

    async def drop_expired(self) -> int:
        """Drop retired collections whose grace period is over (called at start and after each swap's grace)."""
        rows = await self._rows(KbCollection.state == "retired", KbCollection.drop_after <= now())
        for row in rows:
            await self.drop(row.name)
        return len(rows)


async def embed_file_into(
    index: Index, file: FileJob, *, blobs: BlobStore, sparse: SparseEncoder, config: IngestConfig,
    on_batch: Callable[[int, int], Any] | None = None,
) -> tuple[int, int, list[str], float]:  # fmt: skip
    """Parse, chunk, embed and store one file in ``index`` (its embedder and chunking), then publish it there.

    Returns:
        (chunks, pages, warnings, parse_ms). ``on_batch(done, total)`` is awaited after each stored batch.

    Raises:
        PermanentFailure, EngineError: What the ingest of this file would fail with.
    """
    started = time.perf_counter()
    data = await anyio.to_thread.run_sync(blobs.read, file.sha256)
    chunking = replace(config, chunk_tokens=index.chunk_tokens, chunk_overlap=index.chunk_overlap)
    parsed, drafts = await anyio.to_thread.run_sync(
        lambda: parse_and_chunk(data, file.file_type, file.name, config=chunking, window=index.embedder)
    )
    parse_ms = (time.perf_counter() - started) * 1000
    await index.store.delete_file(file.workspace_id, file.id)  # an earlier attempt's points: start clean
    job = Job(file, drafts)
    for offset in range(0, len(drafts), EMBED_BATCH):
        piece = Slice(job, offset, min(offset + EMBED_BATCH, len(drafts)))
        texts = [draft.embed_text for draft in piece.drafts]
        dense = await index.embedder.embed_documents(texts)
        vectors = await anyio.to_thread.run_sync(sparse.encode_documents, texts)
        await index.store.upsert(vector_points([(piece, dense)], vectors))
        if on_batch is not None:
            await on_batch(piece.end, len(drafts))
    await index.store.publish_files(file.workspace_id, [file.id])
    return len(drafts), parsed.pages_total, list(parsed.warnings), parse_ms


def file_job(row: File) -> FileJob:
    return FileJob(
        id=row.id, workspace_id=row.workspace_id, kb_id=row.kb_id, name=row.name, sha256=row.sha256,
        file_type=row.file_type, tags=list(row.tags or []), metadata=dict(row.meta or {}), created_at=row.created_at,
    )  # fmt: skip


class DedicatedIngest:
    """The ingest worker's path for a knowledge base with a live collection of its own: its embedder and
    chunking, one file at a time (the worker's shared batches are the default collection's)."""

    def __init__(self, directory: SqlIndexDirectory, *, blobs: BlobStore, sparse: SparseEncoder,
                 config: IngestConfig) -> None:  # fmt: skip
        self.directory = directory
        self.blobs = blobs
        self.sparse = sparse
        self.config = config

    async def kbs_with_own_index(self, kb_ids: Collection[str]) -> set[str]:
        return await self.directory.kbs_with_live_index(kb_ids)

    async def __call__(self, file: FileJob, progress: Callable[..., Awaitable[bool]]) -> int | None:
        """Ingest ``file`` if its knowledge base has a live collection of its own (read again now).

        ``progress(file_id, **values)`` updates the file row (False: the file was deleted meanwhile).

        Returns:
            None: the knowledge base lives in the default collection (the caller ingests it). The chunk count
            once the file is ready, or -1 when it was deleted meanwhile (its points removed).
        """
        index = await self.directory.live_index(file.workspace_id, file.kb_id)
        if index is None:
            return None
        started = time.perf_counter()

        async def on_batch(done: int, total: int) -> None:
            if not await progress(file.id, chunks_total=total, chunks_done=done):
                raise _Deleted()

        try:
            chunks, pages, warnings, parse_ms = await embed_file_into(
                index, file, blobs=self.blobs, sparse=self.sparse, config=self.config, on_batch=on_batch
            )
        except _Deleted:
            await index.store.delete_file(file.workspace_id, file.id)
            return -1
        async with self.directory.sessions() as session:  # labels edited while it embedded: set the new ones
            row = await session.get(File, file.id)
        if row is not None and (list(row.tags or []) != file.tags or dict(row.meta or {}) != file.metadata):
            await index.store.relabel_file(file.workspace_id, file.id, tags=row.tags or [], metadata=row.meta or {})
        embed_ms = (time.perf_counter() - started) * 1000 - parse_ms
        finished = await progress(
            file.id, status="ready", error=None, pages_total=pages, pages_done=pages, chunks_total=chunks,
            chunks_done=chunks, parse_ms=parse_ms, embed_ms=embed_ms, warnings=warnings, finished_at=now(),
        )  # fmt: skip
        if not finished:
            await index.store.delete_file(file.workspace_id, file.id)
            return -1
        return chunks


class _Deleted(Exception):
    pass

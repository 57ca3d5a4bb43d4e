"""``VectorStore`` on qdrant-edge: Qdrant's Rust segment engine running in this process.

One shard holds every workspace (``workspace_id`` is a tenant-indexed payload field and a mandatory
filter). Edge calls are synchronous and hold the GIL while they run (qdrant-edge 0.9.0: searches, counts,
upserts, deletes and flushes alike); where they run is ``engine.stores.edge_access``. ``optimize()``
(HNSW build) holds the GIL for seconds to minutes, so this process calls it only for ``ragline optimize``
(offline); once ``index_threshold`` dense vectors are outside
HNSW, a child process builds it on a copy and the store swaps the copy in (``engine.stores.edge_index``).
Until then search is an exact scan. Searches read payloads only for what they return
(``engine.stores.edge_files``), and keep those until the next write (``engine.stores.edge_chunks``).

Per-workspace BM25 IDF makes Qdrant count document frequencies under the workspace filter on every query
(5x the cost of a sparse search at 11k chunks, 40x at 100k). When the shard holds nothing but published
points of the querying workspace, the shard-wide statistics are those very numbers, so the filter is
dropped. Likewise a search filter that every point of the shard matches (a knowledge base in its own
collection, a single-tenant store) is left out: checking it per point cost half of a hybrid search at 11k
chunks (2.4 vs 1.4 ms). The shard is locked to this process, so every write passes through here: a write
counter kept like a seqlock tells a search whether the shard changed while it ran, and such a search runs
again with the filter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
import qdrant_edge as qe

from engine.stores._common import (
    Condition,
    IdfScope,
    MatchCondition,
    check_points,
    check_query,
    chunk_from_payload,
    chunks_from_payloads,
    file_conditions,
    files_conditions,
    filter_conditions,
    label_payload,
    published_payload,
    workspace_conditions,
)
from engine.stores.edge_access import DELETE_SLICE, ShardAccess
from engine.stores.edge_chunks import MAX_CHARS, ChunkCache
from engine.stores.edge_files import FileMap, point_key
from engine.stores.edge_index import (
    INDEX_THRESHOLD,
    BackgroundIndexing,
    BuildProcess,
    ReadGate,
    index_offset,
    recover_swap,
    unindexed_at_open,
)
from engine.stores.edge_requests import (
    edge_filter,
    edge_point,
    ensure_payload_indexes,
    mark_published_in,
    open_shard,
    query_request,
)
from engine.types import ChunkRecord, MetadataValue, ScoredChunk, SearchFilters, VectorPoint, VectorQuery


class EdgeVectorStore(ShardAccess, BackgroundIndexing):
    """Embedded vector store in one qdrant-edge shard directory.

    Args:
        path: Shard directory; created (with its parents) when it holds no shard yet.
        dim: Dense vector dimension; an existing shard with another dimension is refused.
        idf_scope: BM25 IDF over the querying workspace (default, no cross-tenant signal) or the whole shard.
        idf_recheck_s: After a write, at most one check per this many seconds of whether the querying workspace
            is alone in the shard (the shard-wide IDF shortcut); 0 checks on the first search after every write.
        index_threshold: Dense vectors outside HNSW that start a background build (``engine.stores.edge_index``);
            ``None``: never (``optimize`` still builds on request).
        chunk_cache_chars: Bound of the cache of returned chunks (``engine.stores.edge_chunks``); 0: no cache.
        delete_slice: Most points one delete write removes (``edge_access.ShardAccess._delete_matching``).

    Raises:
        Conflict: Another process (or another store in this process) has the shard open.
        EngineError: The directory holds an incompatible or unreadable shard.
    """

    def __init__(
        self,
        path: Path,
        dim: int,
        *,
        idf_scope: IdfScope = "workspace",
        idf_recheck_s: float = 1.0,
        index_threshold: int | None = INDEX_THRESHOLD,
        chunk_cache_chars: int = MAX_CHARS,
        delete_slice: int = DELETE_SLICE,
    ) -> None:
        self.path = Path(path)
        self.dim = dim
        self.idf_scope = idf_scope
        self._write_lock = threading.Lock()
        self._closed = False
        self.idf_recheck_s = idf_recheck_s
        self.delete_slice = max(1, delete_slice)
        # Seqlock-style write counter: odd while a write is being applied, bumped again when it is done.
        self._writes = 0
        # (write count, {conditions: every point matches them}): counts made at that write count, for the shortcuts
        self._coverage: tuple[int, dict[tuple[Condition, ...], bool]] = (-1, {})
        self._coverage_recheck_at = 0.0
        self._alone_cache: tuple[int, str, bool] = (-1, "", False)  # (write count, workspace, alone in the shard)
        self._files = FileMap()
        self._chunks = ChunkCache(chunk_cache_chars)
        self._gate = ReadGate()  # a background index swap waits for searches in flight
        self.index_threshold = index_threshold
        self._build: BuildProcess | None = None
        self._replay: list[qe.UpdateOperation] | None = None  # writes since the build's copy, while one runs
        self._pending_indexed: dict[str, int] = {}
        self._published_during_build: set[str] = set()
        self._next_index_check = 0.0
        self._failed_builds = 0
        recover_swap(self.path)
        self._shard = open_shard(self.path, dim)
        try:
            ensure_payload_indexes(self._shard)
            unindexed = unindexed_at_open(self._shard)
            # A payload update moves a point out of its HNSW segment (copy on write), so marked points count as
            # unindexed, and a store that had its index gets it rebuilt now rather than after 10k more points.
            marked = mark_published_in(self._shard)
        except BaseException:
            self._shard.close()
            raise
        # indexed vectors beyond one (sparse) per point on a clean shard: the dense vectors in HNSW segments
        self._index_offset = index_offset(self._shard)
        self._unindexed = min(self._shard.info().points_count, unindexed + marked)
        if marked:
            self._maybe_index()

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points by chunk id. They stay hidden from reads until ``publish_files``."""
        if not points:
            return
        check_points(points, self.dim)
        # Converting 1000 points to edge objects takes ~0.2 s of CPU: do it in the worker, off the event loop.
        await self._write(lambda: qe.UpdateOperation.upsert_points([edge_point(point) for point in points]))
        self._files.learn_points(points)
        await self._outside_index(len(points))

    async def publish_files(self, workspace_id: str, file_ids: Sequence[str]) -> None:
        """Make all chunks of these files searchable in a single WAL operation."""
        if not file_ids:
            return
        target = edge_filter(files_conditions(workspace_id, file_ids, published_only=False))
        published = published_payload(workspace_id)
        moved = await self._write(
            lambda: qe.UpdateOperation.set_payload_by_filter(target, published), then=lambda: self._published(file_ids)
        )
        if moved:
            await self._outside_index(moved)

    async def relabel_file(
        self, workspace_id: str, file_id: str, *, tags: Sequence[str], metadata: Mapping[str, MetadataValue]
    ) -> None:
        """Replace tags and metadata on every chunk of one file in a single WAL operation."""
        target = edge_filter(file_conditions(workspace_id, file_id, published_only=False))
        labels = label_payload(tags, metadata)
        # A payload update moves points out of their HNSW segment (copy on write): they count as unindexed again,
        # or relabelling many files would leave dense search on an exact scan until 10k new points come.
        moved = await self._write(
            lambda: qe.UpdateOperation.set_payload_by_filter(target, labels),
            then=lambda: self._shard.count(qe.CountRequest(exact=True, filter=target)),
        )
        await self._outside_index(moved)

    async def _outside_index(self, points: int) -> None:
        """``points`` more dense vectors are outside HNSW: a background build starts once enough are."""
        self._unindexed += points
        if self.index_threshold is not None and self._unindexed >= self.index_threshold:
            await anyio.to_thread.run_sync(self._maybe_index)

    async def search(self, query: VectorQuery) -> list[ScoredChunk]:
        """Dense, sparse or fused hybrid search over published chunks matching ``query.filters``."""
        check_query(query, self.dim)
        conditions = filter_conditions(query.filters)
        if conditions is None or (query.mode == "sparse" and query.sparse is not None and not query.sparse.indices):
            return []
        # the first grouped search learns every point's file (a scroll of the whole shard): not on the event loop
        first_grouped = query.group_by == "file" and not self._files.loaded
        return await self._read(self.search_sync, query, conditions, inline=not first_grouped)

    def search_sync(self, query: VectorQuery, conditions: list[Condition]) -> list[ScoredChunk]:
        """``search`` in the calling thread (blocking), after its checks.

        The ranking is read without payloads (a payload costs ~10x its score); grouped by file, files come from
        the in-memory ``FileMap``. Only the returned chunks are then read, from the ``ChunkCache`` where it
        has them and from the shard otherwise.
        """
        writes = self._writes
        if query.group_by == "file" and not self._files.loaded:
            self._files.load(self._shard)
        hits = self._query_sync(query, conditions, with_payload=False)
        if query.group_by == "file":
            returned = self._files.first_per_file(self._shard, hits, query.limit)
        else:
            returned = [(hit, hit.id, point_key(hit.id)) for hit in hits]
        chunks = self._chunks_of(returned, writes)
        scored = [(chunks.get(key), hit.score) for hit, _, key in returned]
        return [ScoredChunk(chunk=chunk, score=score) for chunk, score in scored if chunk is not None]  # None: gone

    def _chunks_of(
        self, returned: Sequence[tuple[qe.ScoredPoint, Any, int | str]], writes: int
    ) -> dict[int | str, ChunkRecord]:
        """The chunks of ``returned`` hits by point key; cached ones first, the rest read and cached."""
        keys = [key for _, _, key in returned]
        cached = self._chunks.get(keys, writes)
        found = {key: chunk for key, chunk in zip(keys, cached, strict=True) if chunk is not None}
        missing = [point_id for (_, point_id, _), chunk in zip(returned, cached, strict=True) if chunk is None]
        if missing:
            records = self._shard.retrieve(missing, True, False)
            decoded = chunks_from_payloads([record.payload for record in records])
            read = list(zip([point_key(record.id) for record in records], decoded, strict=True))
            if self._writes == writes:  # no write overlapped the read: the payloads are the current ones
                self._chunks.put(read, writes)
            found.update(read)
        return found

    def _query_sync(
        self, query: VectorQuery, conditions: list[Condition], *, with_payload: bool
    ) -> list[qe.ScoredPoint]:
        before = self._writes
        if before % 2 == 0:
            needed = [] if self._matched_by_all(tuple(conditions), before) else conditions
            if needed and len(conditions) > 1 and self._matched_by_all(tuple(conditions[:1]), before):
                # The workspace condition (``filter_conditions`` puts it first) filters nothing while the
                # workspace is alone and published, yet is checked per point (~0.5 ms in an HNSW walk over 11k
                # points): a search of one of its knowledge bases needs only the kb condition. Only this one
                # condition is tried on its own, so a filter costs at most one more cached count than before.
                needed = conditions[1:]
            scope = self.idf_scope
            if scope == "workspace" and query.mode != "dense" and self._alone(query.filters.workspace_id, before):
                scope = "global"
            if needed is not conditions or scope != self.idf_scope:
                hits = self._shard.query(query_request(query, needed, scope, with_payload))
                if self._writes == before:
                    return hits
        return self._shard.query(query_request(query, conditions, self.idf_scope, with_payload))

    def _alone(self, workspace_id: str, writes: int) -> bool:
        """Whether every point in the shard is a published point of this workspace and the shard-wide term
        statistics count nothing else; cached per write count (no shard call on a search's hot path)."""
        cached_writes, cached_workspace, alone = self._alone_cache
        if cached_writes == writes and cached_workspace == workspace_id:
            return alone
        if not self._matched_by_all(tuple(workspace_conditions(workspace_id)), writes):
            return False
        info = self._shard.info()
        # Shard-wide term statistics still count deleted points until the shard is reopened or optimised; the
        # index then holds more vectors than there are points (one sparse vector per point; dense ones only
        # after an HNSW build, which also leaves the counts unequal).
        alone = info.indexed_vectors_count - info.points_count == self._index_offset
        if self._writes == writes:  # a check that overlapped a write is not kept
            self._alone_cache = (writes, workspace_id, alone)
        return alone

    def _matched_by_all(self, conditions: tuple[Condition, ...], writes: int) -> bool:
        """Whether every point in the shard matches ``conditions`` (two exact counts: ~4 ms at 11k points, once
        per filter and write count, and at most once per ``idf_recheck_s`` while writes keep coming)."""
        counted_at, matched = self._coverage
        if counted_at != writes:
            now = time.monotonic()
            if now < self._coverage_recheck_at:
                return False  # the shard keeps changing (an ingest is running): stay on the filtered path for now
            self._coverage_recheck_at = now + self.idf_recheck_s
            matched = {}
            self._coverage = (writes, matched)
        known = matched.get(conditions)
        if known is not None:
            return known
        total = self._shard.count(qe.CountRequest(exact=True))
        matching = qe.CountRequest(exact=True, filter=edge_filter([*conditions]))
        every = total > 0 and self._shard.count(matching) == total
        if self._writes == writes and len(matched) < 64:  # a count that overlapped a write is not kept
            matched[conditions] = every
        return every

    async def get_chunks(self, workspace_id: str, file_id: str, ordinals: Sequence[int]) -> list[ChunkRecord]:
        """Published chunks of one file with the given ordinals, in ordinal order (missing ones skipped)."""
        wanted = sorted(set(ordinals))
        if not wanted:
            return []
        conditions = [*file_conditions(workspace_id, file_id), MatchCondition("ordinal", tuple(wanted))]
        request = qe.ScrollRequest(limit=len(wanted), filter=edge_filter(conditions), with_payload=True)
        records, _ = await self._read(lambda: self._shard.scroll(request))
        return sorted((chunk_from_payload(record.payload) for record in records), key=lambda c: c.ordinal)

    async def count(self, filters: SearchFilters) -> int:
        """Exact number of published chunks matching ``filters``."""
        conditions = filter_conditions(filters)
        if conditions is None:
            return 0
        request = qe.CountRequest(exact=True, filter=edge_filter(conditions))
        return await self._read(lambda: self._shard.count(request))

    async def delete_file(self, workspace_id: str, file_id: str) -> None:
        """Delete every point of one file, published or not."""
        await self._delete_matching(file_conditions(workspace_id, file_id, published_only=False))

    async def delete_kb(self, workspace_id: str, kb_id: str) -> None:
        """Delete every point of one knowledge base, published or not."""
        kb = MatchCondition("kb_id", (kb_id,))
        await self._delete_matching([*workspace_conditions(workspace_id, published_only=False), kb])

    async def purge_files(self, file_ids: Sequence[str]) -> None:
        """Delete every point of these files whatever their workspace (orphans after a crash)."""
        if file_ids:
            await self._delete_matching([MatchCondition("file_id", tuple(file_ids))])

    async def file_ids(self) -> set[str]:
        """Every file id with at least one point, published or not, across all workspaces."""
        return await self._read(self._file_ids_sync, inline=False)  # a facet over every point

    async def close(self) -> None:
        """Flush segments and release the shard (and its WAL lock). Safe to call twice."""
        await anyio.to_thread.run_sync(self.close_sync)

    def close_sync(self) -> None:
        """Blocking ``close`` for shutdown hooks and CLIs that have no event loop."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            if self._build is not None:
                self._build.kill()  # its thread finds the store closed and drops the copy
            try:
                self._shard.flush()
            finally:
                self._shard.close()

    async def ping(self) -> None:
        """The embedded shard lives in this process: it answers whenever it is open."""
        self._require_open()

    def optimize(self) -> bool:
        """Build HNSW indexes and merge segments. Blocking and GIL-holding: CLI/offline use only.

        Returns:
            True if any segment was optimised.
        """
        with self._write_lock:
            self._require_open()
            optimized = bool(self._shard.optimize())
            self._writes += 2
            self._index_offset = index_offset(self._shard)
            return optimized

    def indexed_vectors(self) -> int:
        """Vectors held in index structures: every sparse vector (its inverted index is always built) plus the
        dense vectors of HNSW-indexed segments, which exist only after ``optimize``."""
        self._require_open()
        with self._gate.read():
            return int(self._shard.info().indexed_vectors_count)

    def _file_ids_sync(self) -> set[str]:
        # Facet over the keyword index; its limit is the point count, an upper bound on distinct ids.
        total = self._shard.count(qe.CountRequest(exact=True))
        if total == 0:
            return set()
        facets = self._shard.facet(qe.FacetRequest(key="file_id", limit=total, exact=True))
        return {str(hit.value) for hit in facets.hits if hit.count > 0}

    def _reopen(self) -> qe.EdgeShard:
        return open_shard(self.path, self.dim, create=False)

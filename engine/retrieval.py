"""Retrieval: embed the query, search dense / sparse / hybrid in Qdrant, attach neighbouring chunks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import msgspec

from engine.errors import InvalidInput
from engine.ports import Embedder, Reranker, SparseEncoder, VectorStore
from engine.types import ChunkRecord, Fusion, ScoredChunk, SearchFilters, SearchMode, SparseVector, VectorQuery

MAX_QUERY_CHARS = 4000
RRF_K = 60  # the same constant the stores use (engine.stores._common.RRF_K)
# group_by="file" asks the store for this many chunks per wanted file, then keeps each file's best chunk.
# A file that owns many of the top chunks (a long document on the query's topic) can still leave fewer
# than top_k distinct files; 4 keeps that rare on real corpora while a query stays one store call.
GROUP_OVERFETCH = 4
# Hybrid group_by="file": chunks fetched from each retriever before grouping. Fixed (not derived from top_k)
# so that DBSF's score statistics, and with them the first ten files, do not change with top_k.
FILE_FUSION_DEPTH = 200
# Dense vs BM25 (weight 1) in hybrid group_by="file" fusion; tuned on SciFact train queries.
DENSE_WEIGHT = 1.5
MAX_WEIGHT = 10.0

GroupBy = Literal["chunk", "file"]


class SearchRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A search as the engine runs it. ``filters.workspace_id`` comes from the caller's credentials."""

    query: str
    filters: SearchFilters
    top_k: int = 10
    mode: SearchMode = "hybrid"
    fusion: Fusion = "dbsf"
    neighbors: int = 0  # chunks of context on each side of every hit
    group_by: GroupBy = "chunk"  # "file": one hit per file, files ranked by their best chunk(s)
    dense_weight: float = DENSE_WEIGHT  # hybrid group_by="file" only: dense vs BM25 (1.0), in [0, 10]


class SearchHit(msgspec.Struct, frozen=True, kw_only=True):
    chunk: ChunkRecord
    score: float
    before: tuple[ChunkRecord, ...] = ()
    after: tuple[ChunkRecord, ...] = ()


class Retriever:
    """Runs searches; the workspace scope is part of every query the store sees."""

    def __init__(
        self,
        *,
        embedder: Embedder,
        sparse: SparseEncoder,
        store: VectorStore,
        max_top_k: int = 100,
        reranker: Reranker | None = None,
    ) -> None:
        self.embedder = embedder
        self.sparse = sparse
        self.store = store
        self.max_top_k = max_top_k
        self.reranker = reranker

    def _validate(self, request: SearchRequest) -> tuple[str, int]:
        query = request.query.replace("\x00", " ").strip()
        if not query:
            raise InvalidInput("query must not be empty")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidInput(f"query is longer than {MAX_QUERY_CHARS} characters")
        if not request.filters.workspace_id:
            raise InvalidInput("a workspace scope is required")
        if not 0.0 <= request.dense_weight <= MAX_WEIGHT:
            raise InvalidInput(f"dense_weight must be between 0 and {MAX_WEIGHT:g}")
        return query, max(1, min(request.top_k, self.max_top_k))

    async def _vectors(self, query: str, mode: SearchMode) -> tuple[list[float] | None, SparseVector | None]:
        dense = await self.embedder.embed_query(query) if mode in ("dense", "hybrid") else None
        sparse = self.sparse.encode_query(query) if mode in ("sparse", "hybrid") else None
        return dense, sparse

    async def retrieve(self, request: SearchRequest) -> list[SearchHit]:
        """Search and return hits, best first, with optional neighbouring chunks.

        Chunk results fuse inside the store (Qdrant's RRF or DBSF over a dense and a BM25 prefetch). Hybrid
        ``group_by="file"`` first ranks files by their best chunk in each retriever, then fuses those two
        file rankings with ``dense_weight``, so a file whose best dense chunk and best BM25 chunk differ
        still gets credit from both.
        """
        query, top_k = self._validate(request)
        dense, sparse = await self._vectors(query, request.mode)
        if sparse is not None and not sparse.indices:
            sparse = None  # nothing but stop words / punctuation: BM25 has no terms to match
            if dense is None:
                return []
        mode: SearchMode = "dense" if request.mode == "hybrid" and sparse is None else request.mode
        if mode == "hybrid" and request.group_by == "file":
            scored = await self._fused_files(request, dense, sparse, top_k)
        else:
            scored = await self._search(request, mode, dense, sparse, top_k)
        if self.reranker is not None:
            scored = await self.reranker.rerank(query, scored)
        scored = (best_chunk_per_file(scored) if request.group_by == "file" else scored)[:top_k]
        if request.neighbors <= 0:
            return [SearchHit(chunk=s.chunk, score=s.score) for s in scored]
        return list(await asyncio.gather(*(self._with_neighbors(s, request.neighbors) for s in scored)))

    async def _search(
        self, request: SearchRequest, mode: SearchMode, dense: list[float] | None, sparse: SparseVector | None,
        top_k: int,
    ) -> list[ScoredChunk]:
        limit = top_k if request.group_by == "chunk" else top_k * GROUP_OVERFETCH
        vector_query = VectorQuery(
            mode=mode, filters=request.filters, limit=limit, dense=dense, sparse=sparse, fusion=request.fusion,
            prefetch_limit=max(100, limit * 4),
        )
        return await self.store.search(vector_query)

    async def _fused_files(
        self, request: SearchRequest, dense: list[float] | None, sparse: SparseVector | None, top_k: int
    ) -> list[ScoredChunk]:
        depth = max(FILE_FUSION_DEPTH, top_k * GROUP_OVERFETCH // 2)
        dense_hits, sparse_hits = await asyncio.gather(
            self.store.search(VectorQuery(mode="dense", filters=request.filters, limit=depth, dense=dense)),
            self.store.search(VectorQuery(mode="sparse", filters=request.filters, limit=depth, sparse=sparse)),
        )
        ranked = [best_chunk_per_file(dense_hits), best_chunk_per_file(sparse_hits)]
        return fuse_files(ranked, fusion=request.fusion, weights=(request.dense_weight, 1.0))

    async def _with_neighbors(self, hit: ScoredChunk, n: int) -> SearchHit:
        chunk = hit.chunk
        wanted = [o for o in range(chunk.ordinal - n, chunk.ordinal + n + 1) if o >= 0 and o != chunk.ordinal]
        around = await self.store.get_chunks(chunk.workspace_id, chunk.file_id, wanted)
        before = tuple(sorted((c for c in around if c.ordinal < chunk.ordinal), key=lambda c: c.ordinal))
        after = tuple(sorted((c for c in around if c.ordinal > chunk.ordinal), key=lambda c: c.ordinal))
        return SearchHit(chunk=chunk, score=hit.score, before=before, after=after)

    async def search(
        self, query: str, *, workspace_id: str, kb_ids: Sequence[str], top_k: int = 5
    ) -> list[ScoredChunk]:
        """The agent's knowledge_search entry point: hybrid search inside the given knowledge bases."""
        if not kb_ids:
            return []
        request = SearchRequest(
            query=query, filters=SearchFilters(workspace_id=workspace_id, kb_ids=tuple(kb_ids)), top_k=top_k
        )
        return [ScoredChunk(chunk=h.chunk, score=h.score) for h in await self.retrieve(request)]


def best_chunk_per_file(scored: Sequence[ScoredChunk]) -> list[ScoredChunk]:
    """Keep the first (best) chunk of every file from a best-first list: files ranked by their best chunk."""
    seen: set[str] = set()
    best: list[ScoredChunk] = []
    for hit in scored:
        if hit.chunk.file_id not in seen:
            seen.add(hit.chunk.file_id)
            best.append(hit)
    return best


def fuse_files(
    ranked: Sequence[Sequence[ScoredChunk]], *, fusion: Fusion, weights: Sequence[float]
) -> list[ScoredChunk]:
    """Fuse best-first lists of files (one best chunk each) with Qdrant's own formulas, best file first.

    DBSF maps each list's scores onto mean +- 3 sample standard deviations (a one-element or constant list
    scores 0.5) and sums them times the list's weight. RRF scores a hit ``1 / ((rank + 1) / w + k - 1)``
    (rank from 0): Qdrant's weighted RRF, where a weight stretches the ranks of its list. Each file is
    shown with the chunk that contributed most to its score.
    """
    fused: dict[str, float] = {}
    shown: dict[str, tuple[float, ChunkRecord]] = {}
    for hits, weight in zip(ranked, weights, strict=True):
        contributions = [c * weight for c in _dbsf(hits)] if fusion == "dbsf" else _rrf(len(hits), weight)
        for hit, contribution in zip(hits, contributions, strict=True):
            file_id = hit.chunk.file_id
            fused[file_id] = fused.get(file_id, 0.0) + contribution
            if file_id not in shown or contribution > shown[file_id][0]:
                shown[file_id] = (contribution, hit.chunk)
    order = sorted(fused, key=lambda file_id: -fused[file_id])
    return [ScoredChunk(chunk=shown[file_id][1], score=fused[file_id]) for file_id in order]


def _dbsf(hits: Sequence[ScoredChunk]) -> list[float]:
    scores = [hit.score for hit in hits]
    if len(scores) < 2:
        return [0.5] * len(scores)
    mean = sum(scores) / len(scores)
    variance = sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)
    if variance == 0:
        return [0.5] * len(scores)
    low, spread = mean - 3 * variance**0.5, 6 * variance**0.5
    return [(s - low) / spread for s in scores]


def _rrf(count: int, weight: float) -> list[float]:
    if weight <= 0:
        return [0.0] * count
    return [1.0 / ((rank + 1.0) / weight + RRF_K - 1.0) for rank in range(count)]

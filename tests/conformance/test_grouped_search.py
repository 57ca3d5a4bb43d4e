"""``group_by="file"`` in the store: each file's best chunk, in the order of the chunk ranking, on every adapter.

The embedded shard reads the ranking without payloads and fetches only the returned chunks'; the result must be
exactly what grouping the full chunk ranking gives (the retriever's old way), so quality cannot move.
"""

from __future__ import annotations

import pytest

from engine.ports import VectorStore
from engine.stores.edge import EdgeVectorStore
from engine.types import ScoredChunk, SearchFilters, VectorPoint, VectorQuery
from tests.conformance.corpus import WS_A, publish_corpus

pytestmark = pytest.mark.anyio

MODES = ("dense", "sparse", "hybrid")


def query(corpus: list[VectorPoint], mode: str, **fields: object) -> VectorQuery:
    probe = next(p for p in corpus if p.chunk.workspace_id == WS_A and p.sparse and p.sparse.indices)
    return VectorQuery(
        mode=mode,  # type: ignore[arg-type]
        filters=SearchFilters(workspace_id=WS_A), dense=probe.dense, sparse=probe.sparse, prefetch_limit=50,
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def first_per_file(hits: list[ScoredChunk]) -> list[ScoredChunk]:
    seen: set[str] = set()
    return [h for h in hits if not (h.chunk.file_id in seen or seen.add(h.chunk.file_id))]


@pytest.mark.parametrize("mode", MODES)
async def test_grouped_search_is_the_chunk_ranking_grouped(
    store: VectorStore, corpus: list[VectorPoint], mode: str
) -> None:
    chunks = await store.search(query(corpus, mode, limit=40))
    for limit in (1, 2, 10):
        grouped = await store.search(query(corpus, mode, limit=limit, group_by="file", candidates=40))
        assert grouped == first_per_file(chunks)[:limit]
        assert len({h.chunk.file_id for h in grouped}) == len(grouped) <= limit


async def test_grouped_search_forgets_nothing_across_a_restart(tmp_path, corpus: list[VectorPoint]) -> None:
    """The file map of a reopened shard is learnt from the shard itself, not from this process's upserts."""
    first = EdgeVectorStore(tmp_path / "shard", 8, index_threshold=None)
    await publish_corpus(first, corpus)
    request = query(corpus, "hybrid", limit=5, group_by="file", candidates=40)
    before = await first.search(request)
    await first.close()
    reopened = EdgeVectorStore(tmp_path / "shard", 8, index_threshold=None)
    try:
        assert await reopened.search(request) == before
        await reopened.delete_file(WS_A, before[0].chunk.file_id)
        after = await reopened.search(request)
        assert before[0].chunk.file_id not in {h.chunk.file_id for h in after}
    finally:
        await reopened.close()

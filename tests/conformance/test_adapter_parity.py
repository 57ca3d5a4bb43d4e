"""The embedded shard and qdrant-client rank the same corpus identically, so switching QDRANT_URL on
does not change what users find. (qdrant-client's local mode reimplements Qdrant's scoring in Python;
qdrant-edge runs the server's own Rust code.)"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from engine.embedders.bm25 import Bm25SparseEncoder
from engine.stores.edge import EdgeVectorStore
from engine.stores.qdrant_server import QdrantServerVectorStore
from engine.types import Fusion, SearchFilters, SearchMode, VectorPoint, VectorQuery
from tests.conformance.corpus import DIM, WS_A, WS_B, publish_corpus

pytestmark = pytest.mark.anyio

QUERY_TEXTS = ["volcano crater pressure", "kangaroo pouch", "sales tax invoice shipping", "espresso pressure"]
CASES: list[tuple[SearchMode, Fusion]] = [("dense", "dbsf"), ("sparse", "dbsf"), ("hybrid", "rrf"), ("hybrid", "dbsf")]


async def test_both_adapters_rank_alike(tmp_path: Path, corpus: list[VectorPoint], edge_template: Path) -> None:
    shutil.copytree(edge_template, tmp_path / "shard")
    edge = EdgeVectorStore(tmp_path / "shard", DIM)
    server = QdrantServerVectorStore(location=":memory:", collection="parity", dim=DIM)
    encoder = Bm25SparseEncoder()
    try:
        for store in (edge, server):
            await publish_corpus(store, corpus)
        for (mode, fusion), (index, text) in itertools.product(CASES, enumerate(QUERY_TEXTS)):
            request = VectorQuery(
                mode=mode,
                filters=SearchFilters(workspace_id=WS_A),
                limit=5,
                dense=corpus[index * 2].dense,
                sparse=encoder.encode_query(text),
                fusion=fusion,
            )
            edge_hits = await edge.search(request)
            server_hits = await server.search(request)
            assert [h.chunk.id for h in edge_hits] == [h.chunk.id for h in server_hits], (mode, fusion, text)
            assert [h.score for h in edge_hits] == pytest.approx([h.score for h in server_hits], rel=1e-3), (
                mode,
                fusion,
                text,
            )
    finally:
        await edge.close()
        await server.close()


async def test_global_idf_scope_scores_alike_across_workspaces(
    tmp_path: Path, corpus: list[VectorPoint], edge_template: Path
) -> None:
    shutil.copytree(edge_template, tmp_path / "shard")
    stores = [
        EdgeVectorStore(tmp_path / "shard", DIM, idf_scope="global"),
        QdrantServerVectorStore(location=":memory:", collection="global-idf", dim=DIM, idf_scope="global"),
    ]
    sparse = Bm25SparseEncoder().encode_query("volcano")
    try:
        for store in stores:
            await publish_corpus(store, corpus)
            scores = []
            for workspace in (WS_A, WS_B):
                request = VectorQuery(
                    mode="sparse", filters=SearchFilters(workspace_id=workspace), limit=5, sparse=sparse
                )
                hits = await store.search(request)
                scores.append(next(h.score for h in hits if h.chunk.text.startswith("A volcano erupts")))
            # The same text scores the same in both workspaces: document frequencies are collection-wide.
            assert scores[0] == pytest.approx(scores[1], rel=1e-6)
    finally:
        for store in stores:
            await store.close()

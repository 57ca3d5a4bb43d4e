"""The rerank port: off by default, pluggable by configuration, applied by the retriever."""

from __future__ import annotations

import asyncio

import pytest

from engine.embedders.bm25 import Bm25SparseEncoder
from engine.rerankers import load_reranker
from engine.retrieval import Retriever, SearchRequest
from engine.settings import Settings
from engine.stores.edge import EdgeVectorStore
from engine.types import ChunkRecord, SearchFilters, VectorPoint
from tests.helpers.rerankers import WordOverlapReranker

TEXTS = [
    "Cats sleep most of the day and hunt at night.",
    "A cat, a dog and a parrot share one small flat in the city.",
    "Dogs need a walk every day, even when it rains.",
]


def test_reranking_is_off_by_default_and_loads_from_configuration():
    assert load_reranker(Settings.from_env({})) is None
    custom = load_reranker(Settings.from_env({"RAGLINE_RERANKER": "tests.helpers.rerankers:word_overlap"}))
    assert isinstance(custom, WordOverlapReranker)
    with pytest.raises(ValueError, match="RAGLINE_RERANKER"):
        load_reranker(Settings.from_env({"RAGLINE_RERANKER": "no-colon-here"}))


def test_retriever_applies_the_reranker(tmp_path, embedder):
    async def scenario() -> tuple[list[str], list[str]]:
        store = EdgeVectorStore(tmp_path / "shard", embedder.dim)
        sparse = Bm25SparseEncoder()
        vectors = await embedder.embed_documents(TEXTS)
        points = [
            VectorPoint(
                chunk=ChunkRecord(
                    id=f"00000000-0000-0000-0000-00000000000{i}",
                    workspace_id="ws",
                    kb_id="kb",
                    file_id="f",
                    file_name="pets.txt",
                    file_type="txt",
                    ordinal=i,
                    text=text,
                ),
                dense=vector,
                sparse=sparse.encode_documents([text])[0],
            )
            for i, (text, vector) in enumerate(zip(TEXTS, vectors, strict=True))
        ]
        await store.upsert(points)
        await store.publish_files("ws", ["f"])
        request = SearchRequest(
            query="a dog and a parrot", filters=SearchFilters(workspace_id="ws"), top_k=3, mode="dense"
        )
        plain = await Retriever(embedder=embedder, sparse=sparse, store=store).retrieve(request)
        reranked = await Retriever(
            embedder=embedder, sparse=sparse, store=store, reranker=WordOverlapReranker()
        ).retrieve(request)
        await store.close()
        return [h.chunk.text for h in plain], [h.chunk.text for h in reranked]

    plain, reranked = asyncio.run(scenario())
    assert sorted(plain) == sorted(reranked)
    assert reranked[0] == TEXTS[1]  # most shared words with the query

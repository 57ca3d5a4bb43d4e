"""Retriever over real stores (qdrant-edge shard and qdrant-client ``:memory:``) with the real MiniLM and BM25.

The corpus is a few dozen real sentences in three files of workspace A, and a workspace B whose file repeats
A's topics almost word for word: if the workspace scope ever widened, B's chunks would rank first.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.embedders.bm25 import Bm25SparseEncoder
from engine.errors import InvalidInput
from engine.ports import Embedder, VectorStore
from engine.retrieval import MAX_QUERY_CHARS, Retriever, SearchRequest
from engine.stores.edge import EdgeVectorStore
from engine.stores.qdrant_server import QdrantServerVectorStore
from engine.types import ChunkRecord, SearchFilters, VectorPoint

pytestmark = pytest.mark.anyio

WS_A, WS_B = "ws-a", "ws-b"
FILES: dict[tuple[str, str, str], list[str]] = {
    (WS_A, "kb-nature", "animals.md"): [
        "Kangaroos carry their young in a pouch and hop across the Australian outback.",
        "An octopus has three hearts and blue blood, and it can change colour to hide from predators.",
        "Honeybees communicate the direction of flowers to the hive with a waggle dance.",
        "Emperor penguins huddle together through the Antarctic winter to keep their eggs warm.",
    ],
    (WS_A, "kb-nature", "geology.md"): [
        "A volcano erupts when the pressure of molten magma breaks through the crust of the earth.",
        "Glaciers carve U-shaped valleys as compacted snow slowly flows downhill over centuries.",
        "Earthquakes happen when tectonic plates slip suddenly along a fault line.",
        "Sedimentary rock forms as layers of sand and mud are buried and cemented over millions of years.",
    ],
    (WS_A, "kb-money", "finance.md"): [
        "A fixed-rate mortgage keeps the same interest rate on the home loan for its whole term.",
        "Inflation erodes the purchasing power of cash savings over time.",
        "The invoice total includes shipping, handling and a regional sales tax.",
        "Diversifying a portfolio across stocks and bonds reduces the risk of large losses.",
    ],
    (WS_B, "kb-other", "copy.md"): [
        "Kangaroos carry their young in a pouch and hop across the outback of Australia.",
        "A volcano erupts when molten magma pressure breaks through the earth's crust.",
        "A fixed-rate mortgage keeps one interest rate on a home loan for the whole term.",
    ],
}
# query -> (file name, ordinal) of the chunk that answers it; worded so BM25 and MiniLM both can find it
CLEAR_QUERIES = {
    "how do kangaroos carry their young": ("animals.md", 0),
    "why does a volcano erupt magma": ("geology.md", 0),
    "interest rate of a fixed-rate mortgage": ("finance.md", 0),
    "honeybees waggle dance to the hive": ("animals.md", 2),
    "what causes earthquakes along a fault": ("geology.md", 2),
}
MODES = [("dense", "dbsf"), ("sparse", "dbsf"), ("hybrid", "dbsf"), ("hybrid", "rrf")]


def file_id(name: str, workspace: str) -> str:
    return f"{workspace}-{name}"


async def build_points(embedder: Embedder) -> list[VectorPoint]:
    sparse = Bm25SparseEncoder()
    points = []
    for (workspace, kb, name), texts in FILES.items():
        fid = file_id(name, workspace)
        dense = await embedder.embed_documents(texts)
        for ordinal, (text, vector, bm25) in enumerate(zip(texts, dense, sparse.encode_documents(texts), strict=True)):
            chunk = ChunkRecord(
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{fid}/{ordinal}")), workspace_id=workspace, kb_id=kb,
                file_id=fid, file_name=name, file_type="md", ordinal=ordinal, text=text, char_end=len(text),
            )
            points.append(VectorPoint(chunk=chunk, dense=vector, sparse=bm25))
    return points


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=["edge", "qdrant-client-memory"])
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> AsyncIterator[VectorStore]:
    path: Path = tmp_path_factory.mktemp("retrieval") / "shard"
    vectors: VectorStore = (
        EdgeVectorStore(path, embedder.dim)
        if request.param == "edge"
        else QdrantServerVectorStore(location=":memory:", collection="retrieval", dim=embedder.dim)
    )
    points = await build_points(embedder)
    await vectors.upsert(points)
    for workspace, fid in {(p.chunk.workspace_id, p.chunk.file_id) for p in points}:
        await vectors.publish_files(workspace, [fid])
    yield vectors
    await vectors.close()


@pytest.fixture
def retriever(store: VectorStore, embedder: Embedder) -> Retriever:
    return Retriever(embedder=embedder, sparse=Bm25SparseEncoder(), store=store, max_top_k=8)


def scope(workspace: str = WS_A, **filters: object) -> SearchFilters:
    return SearchFilters(workspace_id=workspace, **filters)  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "fusion"), MODES)
async def test_every_mode_puts_the_answering_chunk_first(retriever: Retriever, mode: str, fusion: str) -> None:
    for query, (name, ordinal) in CLEAR_QUERIES.items():
        hits = await retriever.retrieve(SearchRequest(query=query, filters=scope(), mode=mode, fusion=fusion))  # type: ignore[arg-type]
        assert hits, query
        assert (hits[0].chunk.file_name, hits[0].chunk.ordinal) == (name, ordinal), query
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize(("mode", "fusion"), MODES)
async def test_group_by_file_ranks_each_file_once_by_its_best_chunk(
    retriever: Retriever, mode: str, fusion: str
) -> None:
    query = "animals of Australia and Antarctica keep their young warm"
    chunks = await retriever.retrieve(
        SearchRequest(query=query, filters=scope(), mode=mode, fusion=fusion, top_k=8)  # type: ignore[arg-type]
    )
    files = await retriever.retrieve(
        SearchRequest(query=query, filters=scope(), mode=mode, fusion=fusion, top_k=3, group_by="file")  # type: ignore[arg-type]
    )
    first_seen: dict[str, ChunkRecord] = {}
    for hit in chunks:
        first_seen.setdefault(hit.chunk.file_id, hit.chunk)
    assert files[0].chunk.file_name == "animals.md"
    assert [h.score for h in files] == sorted((h.score for h in files), reverse=True)
    assert [h.chunk.file_id for h in files] == list(first_seen)[:3]  # a file ranks where its best chunk does
    assert [h.chunk.id for h in files] == [first_seen[h.chunk.file_id].id for h in files]


async def test_top_k_is_clamped_to_at_least_one_and_at_most_the_limit(retriever: Retriever) -> None:
    query = "rock, ice, money and animals"
    assert len(await retriever.retrieve(SearchRequest(query=query, filters=scope(), top_k=0))) == 1
    assert len(await retriever.retrieve(SearchRequest(query=query, filters=scope(), top_k=-5))) == 1
    many = await retriever.retrieve(SearchRequest(query=query, filters=scope(), top_k=10_000, mode="dense"))
    assert len(many) == retriever.max_top_k == 8
    files = await retriever.retrieve(SearchRequest(query=query, filters=scope(), top_k=10_000, group_by="file"))
    assert len(files) == 3  # every file of workspace A, once


@pytest.mark.parametrize("query", ["", "   \n\t", "\x00\x00", "x" * (MAX_QUERY_CHARS + 1)])
async def test_empty_or_oversized_queries_are_invalid_input(retriever: Retriever, query: str) -> None:
    with pytest.raises(InvalidInput):
        await retriever.retrieve(SearchRequest(query=query, filters=scope()))


async def test_a_missing_workspace_scope_is_invalid_input(retriever: Retriever) -> None:
    with pytest.raises(InvalidInput):
        await retriever.retrieve(SearchRequest(query="volcano", filters=scope(workspace="")))


async def test_stop_words_only_find_nothing_in_sparse_mode(retriever: Retriever) -> None:
    assert await retriever.retrieve(SearchRequest(query="the of and", filters=scope(), mode="sparse")) == []


@pytest.mark.parametrize(("mode", "fusion"), MODES)
@pytest.mark.parametrize(
    ("filters", "only_b"),
    [
        ({}, False),
        ({"kb_ids": ("kb-other",)}, True),
        ({"kb_ids": ("kb-nature", "kb-other")}, False),
        ({"file_ids": (file_id("copy.md", WS_B),)}, True),
        ({"file_ids": (file_id("copy.md", WS_B), file_id("animals.md", WS_A))}, False),
    ],
)
async def test_workspace_scope_cannot_be_widened_by_other_ids(
    retriever: Retriever, mode: str, fusion: str, filters: dict[str, tuple[str, ...]], only_b: bool
) -> None:
    own_ids = {file_id(name, ws) for ws, _, name in FILES if ws == WS_A}
    for query in list(CLEAR_QUERIES)[:3]:
        for group_by in ("chunk", "file"):
            request = SearchRequest(
                query=query, filters=scope(**filters), mode=mode, fusion=fusion, top_k=8, group_by=group_by  # type: ignore[arg-type]
            )
            hits = await retriever.retrieve(request)
            assert all(h.chunk.workspace_id == WS_A and h.chunk.file_id in own_ids for h in hits)
            if only_b:
                assert hits == []  # only B's ids asked for: nothing of A matches them either
            elif mode != "sparse":  # BM25 may rightly find nothing inside a narrowed scope; dense always does
                assert hits

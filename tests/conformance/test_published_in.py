"""Stores written before ``published_in`` existed: their published points get it when the store opens, so reads (which
filter on it) find them and BM25 IDF (counted over the points published in the querying workspace) scores them as
before; pending points stay out."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import msgspec
import pytest
import qdrant_edge as qe
from qdrant_client import models

from engine.embedders.bm25 import Bm25SparseEncoder
from engine.ports import VectorStore
from engine.stores import edge_index
from engine.stores._common import PUBLISHED_IN_FIELD
from engine.stores.edge import EdgeVectorStore
from engine.stores.edge_requests import open_shard
from engine.stores.qdrant_server import QdrantServerVectorStore
from engine.types import SearchFilters, VectorPoint, VectorQuery
from tests.conformance.corpus import DIM, WS_A, WS_B, publish_corpus
from tests.conformance.indexing import WS, add_file, nearest, wait_for_build

pytestmark = pytest.mark.anyio

TEXTS = ["volcano crater pressure", "kangaroo pouch young", "merger volcano earth"]


async def sparse_scores(store: VectorStore) -> list[list[tuple[str, float]]]:
    encoder = Bm25SparseEncoder()
    found = []
    for workspace in (WS_A, WS_B):
        for text in TEXTS:
            request = VectorQuery(
                mode="sparse",
                filters=SearchFilters(workspace_id=workspace),
                limit=10,
                sparse=encoder.encode_query(text),
            )
            found.append([(hit.chunk.id, round(hit.score, 5)) for hit in await store.search(request)])
    return found


def draft_of(corpus: list[VectorPoint]) -> list[VectorPoint]:
    """A copy of workspace A's first file under another file id, never published (a file still ingesting)."""
    first = corpus[0].chunk.file_id
    return [
        msgspec.structs.replace(p, chunk=msgspec.structs.replace(p.chunk, id=str(uuid.uuid4()), file_id="draft"))
        for p in corpus
        if p.chunk.file_id == first
    ]


def strip_published_in(path: Path) -> None:
    """Make the shard at ``path`` what an older Ragline left: no published_in, and no index on it."""
    shard = open_shard(path, DIM)
    shard.update(qe.UpdateOperation.delete_payload_by_filter(qe.Filter(), [PUBLISHED_IN_FIELD]))
    shard.update(qe.UpdateOperation.delete_field_index(PUBLISHED_IN_FIELD))
    shard.close()


def edge_count(path: Path, **match: str) -> int:
    shard = open_shard(path, DIM)
    try:
        conditions = [qe.FieldCondition(key, match=qe.MatchValue(value)) for key, value in match.items()]
        return shard.count(qe.CountRequest(exact=True, filter=qe.Filter(must=conditions)))
    finally:
        shard.close()


async def test_an_embedded_shard_from_before_published_in_scores_as_before(
    tmp_path: Path, corpus: list[VectorPoint], edge_template: Path
) -> None:
    path = tmp_path / "shard"
    shutil.copytree(edge_template, path)
    store = EdgeVectorStore(path, DIM)
    await publish_corpus(store, corpus)
    await store.upsert(draft_of(corpus))
    expected = await sparse_scores(store)
    assert all(expected)
    await store.close()

    strip_published_in(path)
    assert edge_count(path, **{PUBLISHED_IN_FIELD: WS_A}) == 0

    reopened = EdgeVectorStore(path, DIM)
    try:
        assert await sparse_scores(reopened) == expected
    finally:
        await reopened.close()
    for workspace in (WS_A, WS_B):
        published = sum(p.chunk.workspace_id == workspace for p in corpus)
        assert edge_count(path, **{PUBLISHED_IN_FIELD: workspace}) == published
        assert edge_count(path, workspace_id=workspace, visibility="published") == published
    assert edge_count(path, file_id="draft", visibility="pending") == len(draft_of(corpus))


async def test_marking_an_older_shard_starts_its_index_build_at_open(tmp_path: Path, monkeypatch) -> None:
    # marking moves points out of HNSW segments (a payload update is copy on write): waiting for 10k more points
    # to be written would leave dense search on an exact scan until then
    monkeypatch.setattr(edge_index, "CHECK_INTERVAL_S", 0.0)
    path = tmp_path / "shard"
    store = EdgeVectorStore(path, DIM, index_threshold=None)
    written = await add_file(store, "older", 200, seed=3)
    await store.close()
    strip_published_in(path)

    reopened = EdgeVectorStore(path, DIM, index_threshold=150)
    try:
        assert reopened.building_index
        await wait_for_build(reopened)
        assert await reopened.count(SearchFilters(workspace_id=WS)) == 200
        for point in (written[0], written[77], written[199]):
            assert (await reopened.search(nearest(point)))[0].chunk.id == point.chunk.id
    finally:
        await reopened.close()


async def test_a_qdrant_collection_from_before_published_in_scores_as_before(corpus: list[VectorPoint]) -> None:
    store = QdrantServerVectorStore(location=":memory:", collection="older", dim=DIM)
    try:
        await publish_corpus(store, corpus)
        await store.upsert(draft_of(corpus))
        expected = await sparse_scores(store)
        assert all(expected)
        raw = store._client  # what an older Ragline left in the collection: published points without published_in
        await raw.delete_payload("older", keys=[PUBLISHED_IN_FIELD], points=models.Filter(), wait=True)

        restarted = store.sibling("older", DIM)  # a process that finds the collection there
        assert await sparse_scores(restarted) == expected
        for workspace in (WS_A, WS_B):
            marked = models.Filter(
                must=[models.FieldCondition(key=PUBLISHED_IN_FIELD, match=models.MatchValue(value=workspace))]
            )
            published = sum(p.chunk.workspace_id == workspace for p in corpus)
            assert (await raw.count("older", count_filter=marked, exact=True)).count == published
    finally:
        await store.close()

"""What only the embedded qdrant-edge store promises: durability, single ownership, lifecycle."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from engine.errors import Conflict, EngineError
from engine.settings import Settings
from engine.stores import create_vector_store
from engine.stores.edge import EdgeVectorStore
from engine.stores.qdrant_server import QdrantServerVectorStore
from engine.types import ChunkRecord, SearchFilters, VectorPoint, VectorQuery
from tests.conformance.corpus import DIM, WS_A, WS_B, publish_corpus

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter from the repository root (so ``tests`` and ``engine`` import)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def counts(store: EdgeVectorStore) -> tuple[int, int]:
    return await store.count(SearchFilters(workspace_id=WS_A)), await store.count(SearchFilters(workspace_id=WS_B))


def expected_counts(corpus: list[VectorPoint]) -> tuple[int, int]:
    return (
        sum(p.chunk.workspace_id == WS_A for p in corpus),
        sum(p.chunk.workspace_id == WS_B for p in corpus),
    )


async def test_points_survive_close_and_reopen(tmp_path: Path, corpus: list[VectorPoint]) -> None:
    store = EdgeVectorStore(tmp_path / "shard", DIM)
    await publish_corpus(store, corpus)
    target = corpus[3]
    dense_query = VectorQuery(mode="dense", filters=SearchFilters(workspace_id=WS_A), limit=3, dense=target.dense)
    before = await store.search(dense_query)
    await store.close()

    reopened = EdgeVectorStore(tmp_path / "shard", DIM)
    try:
        assert await counts(reopened) == expected_counts(corpus)
        assert await reopened.search(dense_query) == before
        assert await reopened.file_ids() == {p.chunk.file_id for p in corpus}
    finally:
        await reopened.close()


@pytest.mark.crash
async def test_points_survive_a_hard_exit_without_close(tmp_path: Path, corpus: list[VectorPoint]) -> None:
    child = run_child(
        """
        import os, sys
        from pathlib import Path
        import anyio
        from engine.stores.edge import EdgeVectorStore
        from tests.conformance.corpus import DIM, build_corpus, publish_corpus

        async def main() -> None:
            store = EdgeVectorStore(Path(sys.argv[1]), DIM)
            await publish_corpus(store, build_corpus())
            print("written", flush=True)
            os._exit(0)  # no close(), no flush(): only the WAL has the points

        anyio.run(main)
        """,
        str(tmp_path / "shard"),
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "written"

    reopened = EdgeVectorStore(tmp_path / "shard", DIM)
    try:
        assert await counts(reopened) == expected_counts(corpus)
        chunks = await reopened.get_chunks(WS_A, corpus[0].chunk.file_id, [0])
        assert chunks == [corpus[0].chunk]
    finally:
        await reopened.close()


async def test_a_second_process_cannot_open_the_shard(tmp_path: Path) -> None:
    owner = EdgeVectorStore(tmp_path / "shard", DIM)
    try:
        child = run_child(
            """
            import sys
            from pathlib import Path
            from engine.errors import Conflict
            from engine.stores.edge import EdgeVectorStore

            try:
                EdgeVectorStore(Path(sys.argv[1]), 8)
            except Conflict as exc:
                print(exc.code, exc.message)
                sys.exit(0)
            sys.exit("opened a shard another process holds")
            """,
            str(tmp_path / "shard"),
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.startswith("conflict data directory is in use by another Ragline process")
    finally:
        await owner.close()
    EdgeVectorStore(tmp_path / "shard", DIM).close_sync()  # released on close


async def test_a_second_opener_in_the_same_process_gets_conflict(tmp_path: Path) -> None:
    owner = EdgeVectorStore(tmp_path / "shard", DIM)
    try:
        with pytest.raises(Conflict, match="in use by another Ragline process"):
            EdgeVectorStore(tmp_path / "shard", DIM)
    finally:
        await owner.close()


async def test_reopening_with_another_dimension_is_refused(tmp_path: Path) -> None:
    EdgeVectorStore(tmp_path / "shard", DIM).close_sync()
    with pytest.raises(EngineError, match="vector size") as caught:
        EdgeVectorStore(tmp_path / "shard", DIM * 2)
    assert not isinstance(caught.value, Conflict)


async def test_a_closed_store_refuses_calls_and_closes_twice(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path / "shard", DIM)
    await store.close()
    await store.close()
    with pytest.raises(EngineError, match="closed"):
        await store.count(SearchFilters(workspace_id=WS_A))
    with pytest.raises(EngineError, match="closed"):
        store.optimize()


async def test_optimize_keeps_every_result(tmp_path: Path, corpus: list[VectorPoint]) -> None:
    store = EdgeVectorStore(tmp_path / "shard", DIM)
    try:
        await publish_corpus(store, corpus)
        dense_query = VectorQuery(
            mode="dense", filters=SearchFilters(workspace_id=WS_A), limit=50, dense=corpus[5].dense
        )
        before = await store.search(dense_query)
        store.optimize()
        after = await store.search(dense_query)
        assert [hit.chunk for hit in after] == [hit.chunk for hit in before]
        assert [hit.score for hit in after] == pytest.approx([hit.score for hit in before], abs=1e-5)
    finally:
        await store.close()


def quantized_segments(shard_dir: Path) -> int:
    """Segments holding int8 copies of the dense vectors (Qdrant writes them when it optimises a segment)."""
    return sum(1 for _ in shard_dir.glob("segments/*/vector_storage-dense/quantized.data"))


async def test_a_shard_made_before_quantization_gets_int8_copies_that_keep_exact_scores(tmp_path: Path) -> None:
    import numpy as np
    import qdrant_edge as qe

    from engine.stores._common import DENSE_VECTOR, SPARSE_VECTOR

    # Qdrant optimises (HNSW + int8 copies) a segment only past ~10 MB of vectors: 3,000 x 1,024 floats is 12 MB
    dim, count = 1024, 3000
    path = tmp_path / "shard"
    path.mkdir()
    unquantized = qe.EdgeConfig(  # what data directories were created with before quantization
        vectors={DENSE_VECTOR: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
        sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )
    qe.EdgeShard.create(str(path), unquantized).close()
    vectors = np.random.default_rng(7).normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    points = [
        VectorPoint(
            chunk=ChunkRecord(
                id=str(uuid.UUID(int=i + 1)), workspace_id=WS_A, kb_id="kb", file_id=f"f{i}", file_name="a.txt",
                file_type="txt", ordinal=0, text=f"chunk {i}",
            ),
            dense=vectors[i].tolist(),
        )
        for i in range(count)
    ]  # fmt: skip
    store = EdgeVectorStore(path, dim)
    try:
        for start in range(0, count, 1000):
            await store.upsert(points[start : start + 1000])
        await store.publish_files(WS_A, [p.chunk.file_id for p in points])
        assert quantized_segments(path) == 0
        assert store.optimize()
        assert quantized_segments(path) >= 1
        assert '"scalar"' in (path / "edge_config.json").read_text()  # the background build's child reads this file

        query = vectors[11] + 0.5 * vectors[12]
        hits = await store.search(
            VectorQuery(mode="dense", filters=SearchFilters(workspace_id=WS_A), limit=5, dense=query.tolist())
        )
        cosine = vectors @ (query / np.linalg.norm(query))
        # the two vectors the query is made of come first (the rest of random 1,024-d vectors are near-ties)
        assert [hit.chunk.text for hit in hits[:2]] == ["chunk 11", "chunk 12"]
        # re-scored with the float vectors: the int8 copies only choose the candidates
        exact = [float(cosine[int(hit.chunk.text.split()[1])]) for hit in hits]
        assert [hit.score for hit in hits] == pytest.approx(exact, abs=1e-5)
    finally:
        await store.close()


async def test_create_vector_store_follows_the_settings(tmp_path: Path) -> None:
    embedded = create_vector_store(Settings(data_dir=tmp_path), DIM)
    try:
        assert isinstance(embedded, EdgeVectorStore)
        assert embedded.path == tmp_path / "qdrant"
    finally:
        await embedded.close()
    remote = create_vector_store(
        Settings(data_dir=tmp_path, qdrant_url="http://127.0.0.1:9", qdrant_collection="c"), DIM
    )
    try:
        assert isinstance(remote, QdrantServerVectorStore)
        assert remote.collection == "c"
    finally:
        await remote.close()

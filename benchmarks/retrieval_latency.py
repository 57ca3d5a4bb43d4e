"""Search latency of the embedded vector store at several sizes, plus query-encoding latency.

Builds one qdrant-edge shard per size with synthetic clustered 384-d vectors (a stand-in for MiniLM
embeddings; uniform random vectors are HNSW's pathological case) and random Zipf-distributed sparse vectors,
then times ``EdgeVectorStore.search`` (the call the app makes: Rust query and payload decoding, in the calling
thread) for dense / sparse / hybrid queries, with only the mandatory workspace filter and with a 10 % kb filter.
Per-workspace IDF is timed twice: with the workspace alone in the shard (the adapter then uses the
shard-wide statistics, which are the same numbers) and after a second tenant's file is added
(``idf=workspace+tenant``: document frequencies are counted under the workspace filter per query).

Usage::

    .venv/bin/python benchmarks/retrieval_latency.py --sizes 1000,10000,100000 [--optimize] [--queries 200]
    .venv/bin/python benchmarks/retrieval_latency.py --sizes 100000 --background-index

``--optimize`` builds HNSW in this process before searching (what ``ragline optimize`` does). With
``--background-index`` the store builds it itself, as a server does: the upserts start a build in a child
process; searches are timed while it runs (with the longest stall of a 10 ms ticker on the event loop, which an
in-process build would hold for minutes), then again after the built shard is swapped in. Without either, no
index is built.

Prints one JSON object, then a short table, and writes the object to ``--out``/retrieval_latency.json
(``retrieval_latency_optimized.json`` with ``--optimize``, ``retrieval_latency_background.json`` with
``--background-index``). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: I001  (first: sets BLAS/torch threads and offline flags before numpy is imported)
import anyio
import anyio.lowlevel
import msgspec
import numpy as np
from benchmarks._results import add_out_argument, finish, run_info, write
from engine.embedders import create_embedder
from engine.settings import Settings
from engine.embedders.bm25 import Bm25SparseEncoder
from engine.stores.edge import EdgeVectorStore
from engine.stores.edge_index import INDEX_THRESHOLD
from engine.types import ChunkRecord, SearchFilters, SparseVector, VectorPoint, VectorQuery

DIM = 384
WORKSPACE = "bench-ws"
KBS = 10  # the filtered case selects one of them: ~10 % of the points
CHUNKS_PER_FILE = 50
VOCABULARY = 30_000
TERMS_PER_CHUNK = 60
BATCH = 1_000
CHAINED_BUILD_WAIT_S = 5.0
QUERY_TEXTS = [
    "how do I rotate the api keys for a workspace",
    "what is the refund policy for annual plans",
    "volcano monitoring with seismometers",
    "quarterly revenue compared to operating costs",
    "steps to reset a forgotten password",
]

del engine  # imported only for its process settings


def clustered_vectors(rng: np.random.Generator, count: int, clusters: int = 200) -> np.ndarray:
    centres = rng.normal(size=(clusters, DIM)).astype(np.float32)
    labels = rng.integers(0, clusters, size=count)
    vectors = centres[labels] + 0.6 * rng.normal(size=(count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def zipf_terms(rng: np.random.Generator, size: int) -> np.ndarray:
    return np.unique(np.minimum(rng.zipf(1.2, size=size), VOCABULARY))


def random_sparse(rng: np.random.Generator, terms: int) -> SparseVector:
    indices = zipf_terms(rng, terms)
    return SparseVector(indices=indices.tolist(), values=rng.uniform(0.5, 2.0, size=len(indices)).tolist())


def make_points(rng: np.random.Generator, start: int, dense: np.ndarray) -> list[VectorPoint]:
    points = []
    for offset, vector in enumerate(dense):
        ordinal = start + offset
        file_number = ordinal // CHUNKS_PER_FILE
        chunk = ChunkRecord(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{ordinal}")),
            workspace_id=WORKSPACE,
            kb_id=f"kb-{file_number % KBS}",
            file_id=f"file-{file_number}",
            file_name=f"file-{file_number}.pdf",
            file_type="pdf",
            ordinal=ordinal % CHUNKS_PER_FILE,
            text="synthetic chunk " * 60,  # ~1 KB payload, like a 200-token chunk
            page=ordinal % CHUNKS_PER_FILE // 3 + 1,
            tags=("bench",),
            created_at=1_700_000_000.0 + file_number,
        )
        points.append(VectorPoint(chunk=chunk, dense=vector.tolist(), sparse=random_sparse(rng, TERMS_PER_CHUNK)))
    return points


async def build_shard(
    path: Path, size: int, seed: int, background: bool = False
) -> tuple[EdgeVectorStore, dict[str, float]]:
    rng = np.random.default_rng(seed)
    store = EdgeVectorStore(path, DIM, index_threshold=INDEX_THRESHOLD if background else None)
    started = time.perf_counter()
    for start in range(0, size, BATCH):
        dense = clustered_vectors(rng, min(BATCH, size - start))
        await store.upsert(make_points(rng, start, dense))
    upserted = time.perf_counter()
    for file_number in range((size + CHUNKS_PER_FILE - 1) // CHUNKS_PER_FILE):
        await store.publish_files(WORKSPACE, [f"file-{file_number}"])
    published = time.perf_counter()
    return store, {
        "upsert_s": round(upserted - started, 2),
        "upsert_points_per_s": round(size / (upserted - started)),
        "publish_s": round(published - upserted, 2),
    }


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000
    return {f"p{q}": round(float(np.percentile(ms, q)), 3) for q in (50, 95, 99)}


async def add_other_tenant(store: EdgeVectorStore, seed: int) -> None:
    """One published file of another workspace, so the querying workspace no longer has the shard to itself."""
    rng = np.random.default_rng(seed + 2)
    points = []
    for n, point in enumerate(make_points(rng, 0, clustered_vectors(rng, CHUNKS_PER_FILE))):
        chunk_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"other/{n}"))
        chunk = msgspec.structs.replace(point.chunk, id=chunk_id, workspace_id="other-ws", file_id="other")
        points.append(msgspec.structs.replace(point, chunk=chunk))
    await store.upsert(points)
    await store.publish_files("other-ws", ["other"])


async def time_searches(
    store: EdgeVectorStore, queries: int, seed: int, idf_scopes: Sequence[str], label: str = ""
) -> dict[str, Any]:
    rng = np.random.default_rng(seed + 1)
    dense_queries = clustered_vectors(rng, queries)
    sparse_queries = [
        SparseVector(indices=(t := zipf_terms(rng, 4)).tolist(), values=[1.0] * len(t)) for _ in range(queries)
    ]
    filter_cases = {
        "workspace_only": SearchFilters(workspace_id=WORKSPACE),
        "kb_10pct": SearchFilters(workspace_id=WORKSPACE, kb_ids=("kb-3",)),
    }
    results: dict[str, Any] = {}
    cases = [("dense", "-")] + [(mode, scope) for mode in ("sparse", "hybrid") for scope in idf_scopes]
    for mode, scope in cases:
        if scope != "-":
            store.idf_scope = scope  # type: ignore[assignment]
        for filter_name, filters in filter_cases.items():
            samples, hits = [], 0
            for i in range(queries):
                request = VectorQuery(
                    mode=mode, filters=filters, limit=10, dense=dense_queries[i].tolist(), sparse=sparse_queries[i]
                )
                started = time.perf_counter()
                found = await store.search(request)
                samples.append(time.perf_counter() - started)
                hits += len(found)
                # searches run in this thread: let the stall ticker in between, as separate requests do
                await anyio.lowlevel.checkpoint()
            name = mode if scope == "-" else f"{mode}/idf={scope}{label}"
            results[f"{name}/{filter_name}"] = {**percentiles(samples), "mean_hits": round(hits / queries, 1)}
    return results


def time_query_encoding(repeats: int) -> dict[str, Any]:
    embedder = create_embedder(msgspec.structs.replace(Settings.from_env(), torch_threads=1))
    embedder.warm_up()
    sparse = Bm25SparseEncoder()
    dense_s, sparse_s = [], []
    for i in range(repeats):
        text = QUERY_TEXTS[i % len(QUERY_TEXTS)]
        started = time.perf_counter()
        embedder.encode_sync([text])  # type: ignore[attr-defined]
        dense_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        sparse.encode_query(text)
        sparse_s.append(time.perf_counter() - started)

    async def through_thread() -> list[float]:
        samples = []
        for i in range(repeats):
            started = time.perf_counter()
            await embedder.embed_query(QUERY_TEXTS[i % len(QUERY_TEXTS)])
            samples.append(time.perf_counter() - started)
        return samples

    return {
        "embedder": type(embedder).__name__,
        "dense_minilm_sync": percentiles(dense_s),
        "dense_minilm_async": percentiles(anyio.run(through_thread)),
        "sparse_bm25": percentiles(sparse_s),
        "torch_threads": 1,
    }


async def bench_size(
    root: Path, size: int, queries: int, optimize: bool, seed: int, idf_scopes: Sequence[str], background: bool = False
) -> dict[str, Any]:
    store, build = await build_shard(root / f"shard-{size}", size, seed, background)
    try:
        if background:
            return await bench_background(store, size, build, queries, seed)
        if optimize:
            started = time.perf_counter()
            store.optimize()
            build["optimize_s"] = round(time.perf_counter() - started, 2)
        # Sparse vectors always sit in their inverted index; dense ones count only once HNSW is built.
        build["indexed_vectors"] = store.indexed_vectors()
        build["hnsw_built"] = build["indexed_vectors"] >= 2 * size
        timings = await time_searches(store, queries, seed, idf_scopes)
        if "workspace" in idf_scopes:
            await add_other_tenant(store, seed)
            shared = await time_searches(store, queries, seed, ["workspace"], label="+tenant")
            timings.update({name: stats for name, stats in shared.items() if "+tenant" in name})
        return {"points": size, "build": build, "search_ms": timings}
    finally:
        await store.close()


async def bench_background(
    store: EdgeVectorStore, size: int, build: dict[str, Any], queries: int, seed: int
) -> dict[str, Any]:
    """Searches while the background build runs (and how long the event loop stalled), then after the swap."""
    stalls: list[float] = []
    building = store._build is not None
    done = anyio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await anyio.sleep(0.01)
            now = time.perf_counter()
            stalls.append(now - last - 0.01)
            last = now

    timings: dict[str, Any] = {}
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        during = 0
        while True:
            while store._build is not None:  # rounds of searches for as long as builds run
                timings = await time_searches(store, queries, seed + during, ["global"], label=" (building)")
                during += 1
            # a build that leaves enough new points starts the next one once it has copied the shard (~1 s at 100k)
            await anyio.sleep(CHAINED_BUILD_WAIT_S)
            if store._build is None:
                break
        done.set()
    build["background_build_s"] = round(time.perf_counter() - started, 1)
    build["build_started"] = building
    build["loop_stall_max_ms"] = round(max(stalls, default=0.0) * 1000, 1)
    build["indexed_vectors"] = store.indexed_vectors()
    build["hnsw_built"] = build["indexed_vectors"] >= 2 * size
    timings.update(await time_searches(store, queries, seed, ["global"]))
    return {"points": size, "build": build, "search_ms": timings}


def print_table(report: dict[str, Any]) -> None:
    print()
    print(f"{'points':>8} {'hnsw':>5} {'query':<44} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'hits':>5}")
    for run in report["sizes"]:
        for name, stats in run["search_ms"].items():
            hnsw = "yes" if run["build"]["hnsw_built"] else "no"
            print(
                f"{run['points']:>8} {hnsw:>5} {name:<44} {stats['p50']:>8} {stats['p95']:>8} {stats['p99']:>8}"
                f" {stats['mean_hits']:>5}"
            )
    if "query_encoding_ms" in report:
        for name, stats in report["query_encoding_ms"].items():
            if isinstance(stats, dict):
                print(f"{'':>8} {'':>5} {'encode ' + name:<44} {stats['p50']:>8} {stats['p95']:>8} {stats['p99']:>8}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated point counts")
    parser.add_argument("--queries", type=int, default=200, help="queries per mode and filter")
    parser.add_argument("--optimize", action="store_true", help="build HNSW (optimize) before searching")
    parser.add_argument("--background-index", action="store_true", help="let the store build HNSW in a child process")
    parser.add_argument("--no-embedder", action="store_true", help="skip the query-embedding measurement")
    parser.add_argument("--dir", type=Path, default=None, help="where to build shards (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--idf-scopes", default="workspace,global", help="BM25 IDF scopes to time (see IdfScope)")
    add_out_argument(parser)
    args = parser.parse_args(argv)

    run = run_info()
    root = Path(tempfile.mkdtemp(prefix="ragline-bench-", dir=args.dir))
    report: dict[str, Any] = {"dim": DIM, "queries_per_case": args.queries, "limit": 10, "sizes": []}
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            report["sizes"].append(
                anyio.run(
                    bench_size, root, size, args.queries, args.optimize, args.seed, args.idf_scopes.split(","),
                    args.background_index,
                )
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not args.no_embedder:
        report["query_encoding_ms"] = time_query_encoding(args.queries)
    report["run"] = finish(run)
    print(json.dumps(report))
    print_table(report)
    name = "retrieval_latency_optimized" if args.optimize else "retrieval_latency"
    write(args.out, "retrieval_latency_background" if args.background_index else name, report)


if __name__ == "__main__":
    main()

"""Where the milliseconds of one search go, on the ingested SciFact store (run retrieval_quality.py first).

Times each SciFact test query end to end through ``Retriever.retrieve`` (top_k=100, group_by="file", the
benchmark's settings) and, separately, each stage the retriever runs: text normalisation, the BM25 query
vector, the query embedding (in the calling thread, and through the embedder's async path), the store call
as the retriever makes it (thread hop included) and, for the embedded shard, the parts of that call: the
Rust query without payloads, mapping points to files and grouping, reading and decoding the returned
payloads, or instead taking them from the store's chunk cache (where the second pass finds them). Stages are
timed one query at a time in rotation, so load changes hit all of them alike.

    .venv/bin/python benchmarks/query_profile.py [--mode hybrid] [--queries 300] [--data-dir DIR]

Prints one JSON object and a table, and writes the object to ``--out``/query_profile_<mode>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: F401,I001  (offline environment and thread limits before numpy/torch)
import msgspec

from api.container import open_services
from benchmarks._results import add_out_argument, finish, run_info, write
from benchmarks._scifact import MANIFEST, load
from engine.retrieval import FUSION_DEPTH, GROUP_OVERFETCH, SearchRequest, normalize_text
from engine.settings import Settings
from engine.stores._common import chunks_from_payloads, filter_conditions
from engine.stores.edge_files import point_key
from engine.types import SearchFilters, VectorQuery


def ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered) * 1000, 3),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 3),
        "mean": round(statistics.fmean(ordered) * 1000, 3),
    }


async def profile(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.from_env(data_dir=args.data_dir)
    manifest = json.loads((args.data_dir / MANIFEST).read_text())
    services = await open_services(settings)
    try:
        retriever, store, embedder = services.retriever, services.store, services.embedder
        filters = SearchFilters(workspace_id=manifest["workspace_id"], kb_ids=(manifest["kb_id"],))
        texts = list(load("test").queries.values())[: args.queries]
        mode = args.mode
        candidates = args.top_k * GROUP_OVERFETCH

        def vector_query(text: str) -> VectorQuery:
            normalized = normalize_text(text)
            dense = embedder.encode_sync([normalized], query=True)[0] if mode != "sparse" else None  # type: ignore[attr-defined]
            sparse = retriever.sparse.encode_query(normalized) if mode != "dense" else None
            return VectorQuery(
                mode=mode, filters=filters, limit=args.top_k, dense=dense, sparse=sparse,
                prefetch_limit=max(FUSION_DEPTH, args.top_k), group_by="file", candidates=candidates,
            )  # fmt: skip

        queries = [vector_query(text) for text in texts]
        stages: dict[str, list[float]] = {}

        def timed(name: str, call: Callable[[], Any]) -> Any:
            started = time.perf_counter()
            result = call()
            stages.setdefault(name, []).append(time.perf_counter() - started)
            return result

        async def atimed(name: str, call: Callable[[], Any]) -> Any:
            started = time.perf_counter()
            result = await call()
            stages.setdefault(name, []).append(time.perf_counter() - started)
            return result

        shard = getattr(store, "_shard", None)
        conditions = filter_conditions(filters)
        for warm in range(2):  # first pass warms caches (model, the shard's file map); only the second counts
            stages.clear()
            for text, query in zip(texts, queries, strict=True):
                request = SearchRequest(query=text, filters=filters, top_k=args.top_k, mode=mode, group_by="file")
                await atimed("total: Retriever.retrieve", lambda r=request: retriever.retrieve(r))
                timed("normalize_text", lambda t=text: normalize_text(t))
                if mode != "dense":
                    timed("bm25 query vector", lambda t=text: retriever.sparse.encode_query(t))
                if mode != "sparse":
                    timed("embed query (calling thread)", lambda t=text: embedder.encode_sync([t], query=True))  # type: ignore[attr-defined]
                    await atimed("embed query (async path)", lambda t=text: embedder.embed_query(t))
                await atimed("store.search (thread hop incl.)", lambda q=query: store.search(q))
                if shard is not None and conditions is not None:
                    hits = timed("  shard.query, no payload", lambda q=query: _ranked(store, q, conditions))
                    best = timed("  map to files + group", lambda h=hits: _group(store, h, args.top_k))
                    records = timed("  retrieve payloads (not cached)", lambda b=best: shard.retrieve(b, True, False))
                    timed("  decode payloads (not cached)", lambda r=records: _decode(r))
                    keys = [point_key(point_id) for point_id in best]
                    timed("  the same chunks from the chunk cache", lambda k=keys: store._chunks.get(k, store._writes))
                    from engine.stores.edge_requests import query_request as _query_request

                    request_p = _query_request(msgspec.structs.replace(query, group_by="chunk", limit=candidates),
                                               conditions, "global", True)  # fmt: skip
                    timed("  (before: shard.query with 400 payloads)", lambda r=request_p: shard.query(r))
            if warm == 0:
                continue
    finally:
        await services.close()
    return {name: ms(samples) for name, samples in stages.items()}


def _ranked(store: Any, query: VectorQuery, conditions: Any) -> list[Any]:
    """The ranking call as the store makes it (its filter and IDF shortcuts included), without payloads."""
    return store._query_sync(query, conditions, with_payload=False)  # type: ignore[no-any-return]


def _decode(records: list[Any]) -> list[Any]:
    return chunks_from_payloads([record.payload for record in records])


def _group(store: Any, hits: list[Any], limit: int) -> list[Any]:
    return [point_id for _, point_id, _ in store._files.first_per_file(store._shard, hits, limit)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("dense", "sparse", "hybrid"), default="hybrid")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ragline-scifact-200-40"))
    add_out_argument(parser)
    args = parser.parse_args()
    run = run_info()
    stages = asyncio.run(profile(args))
    report = {"mode": args.mode, "top_k": args.top_k, "group_by": "file", "queries": args.queries,
              "stages_ms": stages, "run": finish(run)}  # fmt: skip
    print(json.dumps(report))
    print(f"\n{'stage':<44}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    for name, stats in stages.items():
        print(f"{name:<44}{stats['p50']:>9.3f}{stats['p95']:>9.3f}{stats['mean']:>9.3f}")
    write(args.out, f"query_profile_{args.mode}", report)


if __name__ == "__main__":
    main()

"""What ``EdgeVectorStore`` sends a qdrant-edge shard: its config and opening, payload indexes, points, query
requests and filters built from Ragline's types, and the shard's errors turned into Ragline's."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as qe

from engine.errors import Conflict, EngineError, InvalidInput
from engine.stores._common import (
    DENSE_VECTOR,
    PAYLOAD_INDEXES,
    PUBLISHED,
    PUBLISHED_IN_FIELD,
    RRF_K,
    SPARSE_VECTOR,
    VISIBILITY_FIELD,
    Condition,
    IdfScope,
    IndexKind,
    RangeCondition,
    candidate_limit,
    point_payload,
    prefetch_limit,
    workspace_conditions,
)
from engine.types import VectorPoint, VectorQuery

T = TypeVar("T")

_IN_USE = "data directory is in use by another Ragline process"


# Dense vectors also kept as int8 (scalar quantisation) once a segment is optimised: the HNSW walk reads a quarter
# of the bytes and the top candidates are re-scored with the float vectors. SciFact, 11.4k chunks, 300 test queries,
# alternating runs on 2 cores: store search p50 dense 2.47 -> 2.07 ms, hybrid 2.29 -> 2.14 ms; nDCG@10 dense
# 0.6607 -> 0.6607, hybrid 0.7346 -> 0.7362; 16 HTTP clients 182-191 -> 208-210 hybrid searches/s. A loaded shard
# takes the config passed here, so existing data directories get it at their next index build.
DENSE_QUANTIZATION = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
# Rescoring is asked for: left to the engine, results came back with int8 scores (off by up to 0.002), which DBSF
# then fuses, and which differ from the float scores of segments still outside HNSW.
DENSE_PARAMS = qe.SearchParams(quantization=qe.QuantizationSearchParams(rescore=True))


# The shard's search pool: one thread per core this process may use. Left to the engine it had 8 threads on 2 cores,
# and searches that arrive from several request threads at once kept waking all of them (~35k involuntary context
# switches/s at 16 HTTP clients). SciFact store, 16 clients, three alternating rounds of 8 against 2 threads: hybrid
# 137-145 -> 142-154 searches/s (server CPU 8.7-9.3 -> 8.0-8.8 ms per search), BM25 515-518 -> 487-592; one query at
# a time p50 hybrid 6.7-6.8 -> 5.7-6.4 ms, dense 7.5-8.0 -> 7.1 ms; nDCG@10 unchanged. Persisted in edge_config.json,
# and what is passed here wins at the next load (a data directory moved to a bigger machine gets more threads).
SEARCH_THREADS = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _edge_config(dim: int) -> qe.EdgeConfig:
    return qe.EdgeConfig(
        vectors={
            DENSE_VECTOR: qe.EdgeVectorParams(
                size=dim, distance=qe.Distance.Cosine, quantization_config=DENSE_QUANTIZATION
            )
        },
        sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        max_search_threads=SEARCH_THREADS,
    )


def open_shard(path: Path, dim: int, *, create: bool = True) -> qe.EdgeShard:
    """Load the shard in ``path``; where there is none, a new empty one (``create``) or an error."""
    config = _edge_config(dim)
    try:
        if (path / "edge_config.json").exists():
            return qe.EdgeShard.load(str(path), config)
        if not create:
            raise FileNotFoundError("no edge_config.json")
        path.mkdir(parents=True, exist_ok=True)
        return qe.EdgeShard.create(str(path), config)
    except Exception as exc:
        if "WouldBlock" in str(exc):
            raise Conflict(f"{_IN_USE}: {path} (stop the other process, or set QDRANT_URL)") from exc
        raise EngineError(f"cannot open the vector store at {path}: {exc}", code="store_unavailable") from exc


def ensure_payload_indexes(shard: qe.EdgeShard) -> None:
    existing = set(shard.info().payload_schema)
    for field, kind in PAYLOAD_INDEXES.items():
        if field not in existing:
            shard.update(qe.UpdateOperation.create_field_index(field, _index_schema(kind)))


def pending_files(shard: qe.EdgeShard) -> dict[str, int]:
    """Points not published yet (their files still being ingested), counted by file."""
    unpublished = qe.Filter(must=[qe.IsEmptyCondition(PUBLISHED_IN_FIELD)])
    return {str(hit.value): int(hit.count) for hit in _every_value(shard, "file_id", unpublished)[1]}


def point_count(shard: qe.EdgeShard) -> int:
    return int(shard.count(qe.CountRequest(exact=True)))


def _every_value(shard: qe.EdgeShard, key: str, where: qe.Filter) -> tuple[int, list[qe.FacetHit]]:
    """How many points match ``where``, and every value of ``key`` among them with its count (exact, no cut-off);
    one count and nothing more when none match."""
    total = shard.count(qe.CountRequest(exact=True, filter=where))
    if total == 0:
        return 0, []
    return total, list(shard.facet(qe.FacetRequest(key=key, limit=total, exact=True, filter=where)).hits)


def mark_published_in(shard: qe.EdgeShard) -> int:
    """Give points published without ``published_in`` (by a Ragline before it) their workspace there, so that
    reads find them; how many it marked. On a current shard this is one count that finds nothing."""
    published = qe.FieldCondition(VISIBILITY_FIELD, match=qe.MatchValue(PUBLISHED))
    unmarked = qe.Filter(must=[published, qe.IsEmptyCondition(PUBLISHED_IN_FIELD)])
    total, workspaces = _every_value(shard, "workspace_id", unmarked)
    for hit in workspaces:
        workspace = qe.FieldCondition("workspace_id", match=qe.MatchValue(hit.value))
        target = qe.Filter(must=[published, qe.IsEmptyCondition(PUBLISHED_IN_FIELD), workspace])
        shard.update(qe.UpdateOperation.set_payload_by_filter(target, {PUBLISHED_IN_FIELD: hit.value}))
    return total


def _index_schema(kind: IndexKind) -> qe.PayloadSchemaType | qe.KeywordIndexParams:
    if kind == "tenant":
        # Tenant index: segments are laid out per workspace, so workspace-filtered scans stay local.
        return qe.KeywordIndexParams(is_tenant=True)
    schema_types = {
        "keyword": qe.PayloadSchemaType.Keyword,
        "integer": qe.PayloadSchemaType.Integer,
        "float": qe.PayloadSchemaType.Float,
    }
    return schema_types[kind]


def edge_point(point: VectorPoint) -> qe.Point:
    vectors: dict[str, list[float] | qe.SparseVector] = {DENSE_VECTOR: list(point.dense)}
    if point.sparse is not None:
        vectors[SPARSE_VECTOR] = qe.SparseVector(list(point.sparse.indices), list(point.sparse.values))
    return qe.Point(point.chunk.id, vectors, point_payload(point))  # type: ignore[arg-type]


def query_request(
    query: VectorQuery, conditions: list[Condition], idf_scope: IdfScope, with_payload: bool = True
) -> qe.QueryRequest:
    flt = edge_filter(conditions) if conditions else None
    limit = candidate_limit(query)
    sparse_params = None
    if idf_scope == "workspace":
        corpus = edge_filter(workspace_conditions(query.filters.workspace_id))
        sparse_params = qe.SearchParams(idf=qe.IdfParams(corpus=corpus))
    dense = qe.Query.Nearest(list(query.dense or []), using=DENSE_VECTOR)
    sparse = None
    if query.sparse is not None:
        sparse = qe.Query.Nearest(
            qe.SparseVector(list(query.sparse.indices), list(query.sparse.values)), using=SPARSE_VECTOR
        )
    if query.mode == "dense":
        return qe.QueryRequest(limit=limit, query=dense, filter=flt, with_payload=with_payload, params=DENSE_PARAMS)
    if query.mode == "sparse":
        return qe.QueryRequest(limit=limit, query=sparse, filter=flt, with_payload=with_payload, params=sparse_params)
    prefetches = [qe.Prefetch(limit=prefetch_limit(query), query=dense, filter=flt, params=DENSE_PARAMS)]
    if query.sparse is not None and query.sparse.indices:
        prefetches.append(qe.Prefetch(limit=prefetch_limit(query), query=sparse, filter=flt, params=sparse_params))
    # The stubs declare Fusion.Rrf/Dbsf as nested classes rather than as the Fusion the runtime accepts.
    fusion: qe.Fusion = qe.Fusion.Rrf(k=RRF_K) if query.fusion == "rrf" else qe.Fusion.Dbsf()  # type: ignore[assignment]
    return qe.QueryRequest(limit=limit, prefetches=prefetches, query=fusion, filter=flt, with_payload=with_payload)


def edge_filter(conditions: list[Condition]) -> qe.Filter:
    return qe.Filter(must=[_edge_condition(condition) for condition in conditions])


def _edge_condition(condition: Condition) -> qe.FieldCondition:
    if isinstance(condition, RangeCondition):
        bounds = qe.RangeFloat(gte=condition.gte, lt=condition.lt, lte=condition.lte)
        return qe.FieldCondition(condition.key, range=bounds)
    values = condition.values
    if len(values) == 1:
        return qe.FieldCondition(condition.key, match=qe.MatchValue(values[0]))
    return qe.FieldCondition(condition.key, match=qe.MatchAny(list(values)))  # type: ignore[arg-type]


def translate_errors(call: Callable[..., T], *args: Any) -> T:
    try:
        return call(*args)
    except ValueError as exc:  # bad point ids, malformed vectors
        raise InvalidInput(str(exc)) from exc
    except Exception as exc:
        if "dimension error" in str(exc):
            raise InvalidInput(str(exc)) from exc
        raise EngineError(f"vector store error: {exc}", code="store_error") from exc

"""What both vector store adapters share: the collection layout, payload mapping and filter semantics.

Filters are translated once into a neutral list of conditions here, and each adapter maps those to its
own SDK classes, so the embedded shard and a Qdrant server apply exactly the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec

from engine.errors import InvalidInput
from engine.types import ChunkRecord, MetadataValue, SearchFilters, VectorPoint, VectorQuery

T = TypeVar("T")

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
RRF_K = 60  # the usual RRF constant; set explicitly so both adapters fuse identically
# Not a ChunkRecord field: chunks are upserted "pending" and a file becomes "published" (searchable) in one
# operation. A keyword, not a bool: qdrant-edge 0.9 turns MatchValue(True) into the integer 1, which never
# matches a stored boolean.
VISIBILITY_FIELD = "visibility"
# The workspace id of a published point; absent while it is pending (publish_files sets it, under a filter on the
# point's own workspace_id). Reads of published points filter on this one keyword instead of workspace_id +
# visibility: each condition is checked per point, and on qdrant-edge 0.9 at 100k points with a second tenant in the
# shard an exact dense search took 52-57 ms under the two against 23-28 ms under this one, and counting BM25
# document frequencies (per-workspace IDF) 25-27 against 2.2-3.1 ms per sparse query, with the same results.
PUBLISHED_IN_FIELD = "published_in"
METADATA_FIELD = "metadata"  # ChunkRecord.metadata: user keys are filtered as "metadata.<key>"
PENDING = "pending"
PUBLISHED = "published"

# BM25 IDF statistics: over the querying workspace only (another tenant's documents never shift scores, so
# scores cannot reveal which terms other workspaces contain), or over the whole collection. Workspace scope
# recounts document frequencies per query once other tenants share the shard: +0.4 ms p50 per sparse query at 10k
# points and +3 ms at 100k (benchmarks/retrieval_latency.py, synthetic Zipf terms).
IdfScope = Literal["workspace", "global"]

IndexKind = Literal["tenant", "keyword", "integer", "float"]
PAYLOAD_INDEXES: dict[str, IndexKind] = {
    "workspace_id": "tenant",
    "kb_id": "keyword",
    "file_id": "keyword",
    "file_type": "keyword",
    "tags": "keyword",
    "page": "integer",
    "ordinal": "integer",
    "created_at": "float",
    VISIBILITY_FIELD: "keyword",
    PUBLISHED_IN_FIELD: "keyword",
}


@dataclass(frozen=True, slots=True)
class MatchCondition:
    """The payload field equals one of ``values`` (for list fields: contains one of them)."""

    key: str
    values: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class RangeCondition:
    """Numeric range; ``None`` bounds are open. Points without the field never match."""

    key: str
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


Condition = MatchCondition | RangeCondition


def point_payload(point: VectorPoint) -> dict[str, Any]:
    """The stored payload of a point: the ChunkRecord fields plus its visibility, initially pending."""
    payload: dict[str, Any] = msgspec.to_builtins(point.chunk)
    payload[VISIBILITY_FIELD] = PENDING
    return payload


def published_payload(workspace_id: str) -> dict[str, Any]:
    """The payload keys ``publish_files`` sets on a file's points."""
    return {VISIBILITY_FIELD: PUBLISHED, PUBLISHED_IN_FIELD: workspace_id}


def label_payload(tags: Sequence[str], metadata: Mapping[str, MetadataValue]) -> dict[str, Any]:
    """The payload keys ``relabel_file`` sets; top-level keys are replaced whole, so removed metadata goes."""
    return {"tags": list(tags), METADATA_FIELD: dict(metadata)}


def chunk_from_payload(payload: dict[str, Any] | None) -> ChunkRecord:
    fields = {k: v for k, v in (payload or {}).items() if k not in (VISIBILITY_FIELD, PUBLISHED_IN_FIELD)}
    return msgspec.convert(fields, ChunkRecord)


def workspace_conditions(workspace_id: str, *, published_only: bool = True) -> list[Condition]:
    """The published points of one workspace (one condition, see ``PUBLISHED_IN_FIELD``); with
    ``published_only=False`` every point of it (writes, deletes)."""
    _require_workspace(workspace_id)
    if published_only:
        return [MatchCondition(PUBLISHED_IN_FIELD, (workspace_id,))]
    return [MatchCondition("workspace_id", (workspace_id,))]


def file_conditions(workspace_id: str, file_id: str, *, published_only: bool = True) -> list[Condition]:
    """One file of one workspace; with ``published_only=False`` every point of it (writes, deletes)."""
    return files_conditions(workspace_id, (file_id,), published_only=published_only)


def files_conditions(workspace_id: str, file_ids: Sequence[str], *, published_only: bool = True) -> list[Condition]:
    """Any of these files of one workspace (``file_conditions`` for several at once)."""
    if not file_ids:
        raise InvalidInput("file_ids must not be empty")  # an empty match would select nothing or, worse, everything
    files = MatchCondition("file_id", tuple(file_ids))
    return [*workspace_conditions(workspace_id, published_only=published_only), files]


def filter_conditions(filters: SearchFilters) -> list[Condition] | None:
    """Translate ``SearchFilters`` into conditions, all of which must hold; the workspace's comes first.

    Returns ``None`` when the filter cannot match anything: an empty ``kb_ids``/``file_ids``/``file_types``/
    ``tags`` tuple, or a metadata key with no accepted value, means "none of them" (fail closed), not "any".
    ``page_from``/``page_to`` are inclusive; ``created_after`` is inclusive and ``created_before`` exclusive.
    """
    conditions = workspace_conditions(filters.workspace_id)
    for key, values in (
        ("kb_id", filters.kb_ids),
        ("file_id", filters.file_ids),
        ("file_type", filters.file_types),
        ("tags", filters.tags),
    ):
        if values is None:
            continue
        if not values:
            return None
        conditions.append(MatchCondition(key, tuple(values)))
    for name, accepted in filters.metadata or ():
        if not accepted:
            return None
        conditions.append(MatchCondition(f"{METADATA_FIELD}.{name}", accepted))
    if filters.page_from is not None or filters.page_to is not None:
        conditions.append(RangeCondition("page", gte=filters.page_from, lte=filters.page_to))
    if filters.created_after is not None or filters.created_before is not None:
        conditions.append(RangeCondition("created_at", gte=filters.created_after, lt=filters.created_before))
    return conditions


def check_points(points: Sequence[VectorPoint], dim: int) -> None:
    for point in points:
        _require_workspace(point.chunk.workspace_id)
        if len(point.dense) != dim:
            raise InvalidInput(f"dense vector has {len(point.dense)} dimensions, the store expects {dim}")


def check_query(query: VectorQuery, dim: int) -> None:
    """Reject queries the store cannot run, before they reach the SDK."""
    if query.limit < 1:
        raise InvalidInput("limit must be at least 1")
    needs_dense = query.mode in ("dense", "hybrid")
    needs_sparse = query.mode in ("sparse", "hybrid")
    if needs_dense and (query.dense is None or len(query.dense) != dim):
        raise InvalidInput(f"{query.mode} search needs a {dim}-dimensional dense vector")
    if needs_sparse and query.sparse is None:
        raise InvalidInput(f"{query.mode} search needs a sparse vector")


def prefetch_limit(query: VectorQuery) -> int:
    """Candidates per retriever before fusion: never fewer than the results asked for.

    Grouped by file, the fused ranking may be longer than each prefetch (two prefetches of 200 fuse into up to
    400 candidates), so the prefetch is bounded by ``limit``, not by ``candidates``.
    """
    return max(query.prefetch_limit, query.limit)


def candidate_limit(query: VectorQuery) -> int:
    """Chunks the store ranks for ``query``: ``candidates`` when grouping by file, else ``limit``."""
    return max(query.candidates, query.limit) if query.group_by == "file" else query.limit


def first_per_file(ranked: Sequence[T], file_ids: Sequence[str | None], limit: int) -> list[T]:
    """The first (best) of each file's items from a best-first list, at most ``limit`` of them.

    ``file_ids[i]`` is the file of ``ranked[i]``; ``None`` (a point deleted meanwhile) skips it.
    """
    seen: set[str] = set()
    best: list[T] = []
    for item, file_id in zip(ranked, file_ids, strict=True):
        if file_id is None or file_id in seen:
            continue
        seen.add(file_id)
        best.append(item)
        if len(best) >= limit:
            break
    return best


def chunks_from_payloads(payloads: Sequence[dict[str, Any] | None]) -> list[ChunkRecord]:
    """``chunk_from_payload`` for many at once: one msgspec call (4x faster; unknown keys are ignored)."""
    return msgspec.convert([payload or {} for payload in payloads], list[ChunkRecord])


def _require_workspace(workspace_id: str) -> None:
    # An empty workspace id would silently match nothing or, worse, be stored unscoped.
    if not workspace_id:
        raise InvalidInput("workspace_id is required")

"""Value types shared by ingest, retrieval and the agent runtime (frozen msgspec Structs)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# Prompt and workflow version numbers count from 1 and are stored in 32-bit INTEGER columns (PostgreSQL's; SQLite's
# take 64 bits): a request naming a larger one is refused when decoded, before the driver would overflow (a 500).
MAX_VERSION = 2**31 - 1
VersionNumber = Annotated[int, msgspec.Meta(ge=1, le=MAX_VERSION)]
SearchMode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["rrf", "dbsf"]
MetadataScalar = str | int  # no bool: see engine.metadata
MetadataValue = str | int | list[str]


class SparseVector(msgspec.Struct, frozen=True):
    """A sparse (BM25) vector: parallel lists of term indices and weights."""

    indices: list[int]
    values: list[float]


class ChunkRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One chunk of one file, as stored in the vector store's payload."""

    id: str  # deterministic UUID: uuid5(file_id, ordinal)
    workspace_id: str
    kb_id: str
    file_id: str
    file_name: str
    file_type: str  # lower-case extension without dot: "pdf", "md", ...
    ordinal: int
    text: str
    page: int | None = None
    heading_path: tuple[str, ...] = ()
    char_start: int = 0
    char_end: int = 0
    tags: tuple[str, ...] = ()
    created_at: float = 0.0  # unix seconds of the file's upload
    metadata: dict[str, MetadataValue] = msgspec.field(default_factory=dict)  # the file's, see engine.metadata


class VectorPoint(msgspec.Struct, frozen=True, kw_only=True):
    """A chunk with its dense and sparse vectors, ready to upsert."""

    chunk: ChunkRecord
    dense: list[float]
    sparse: SparseVector | None = None


class SearchFilters(msgspec.Struct, frozen=True, kw_only=True):
    """Payload filters. ``workspace_id`` is mandatory: every query is scoped by the engine."""

    workspace_id: str
    kb_ids: tuple[str, ...] | None = None
    file_ids: tuple[str, ...] | None = None
    file_types: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None  # a chunk matches if it has any of these tags
    # (key, accepted values): every key must hold one of its values (a list value: contain one of them)
    metadata: tuple[tuple[str, tuple[MetadataScalar, ...]], ...] | None = None
    page_from: int | None = None
    page_to: int | None = None
    created_after: float | None = None
    created_before: float | None = None


class VectorQuery(msgspec.Struct, frozen=True, kw_only=True):
    """What the vector store executes: dense, sparse or fused hybrid, always filtered."""

    mode: SearchMode
    filters: SearchFilters
    limit: int
    dense: list[float] | None = None
    sparse: SparseVector | None = None
    fusion: Fusion = "dbsf"
    prefetch_limit: int = 100
    # "file": rank ``candidates`` chunks, keep each file's first (best) one, return up to ``limit`` of those.
    # In the store, so only the returned chunks' payloads are read (a payload costs more than its score).
    group_by: Literal["chunk", "file"] = "chunk"
    candidates: int = 0  # chunks ranked before grouping (0: ``limit``)


class ScoredChunk(msgspec.Struct, frozen=True, kw_only=True):
    chunk: ChunkRecord
    score: float


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True):
    prompt: int = 0
    completion: int = 0
    total: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            prompt=self.prompt + other.prompt,
            completion=self.completion + other.completion,
            total=self.total + other.total,
        )

"""Request bodies (the wire contract). Responses reuse the services' value types inside the envelope."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from engine.metadata import METADATA_KEY
from engine.types import MetadataScalar, MetadataValue
from engine.workspace_events import MAX_PATTERN, MAX_TYPE, PATTERN_RE, TYPE_RE

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Id = Annotated[str, Meta(min_length=1, max_length=64)]
ModelName = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@-]+\Z")]  # a litellm model
# The service checks these with messages that say what a type is; the document gets the patterns
# (``extra_json_schema``: shown, not enforced by the decoder)
EventTypeName = Annotated[str, Meta(min_length=1, max_length=MAX_TYPE, extra_json_schema={"pattern": TYPE_RE.pattern})]
EventTypePattern = Annotated[
    str, Meta(min_length=1, max_length=MAX_PATTERN, extra_json_schema={"pattern": PATTERN_RE.pattern})
]
EventTypePatterns = Annotated[list[EventTypePattern], Meta(min_length=1, max_length=20)]
MetadataKey = Annotated[str, Meta(extra_json_schema={"pattern": f"^{METADATA_KEY.pattern}$"})]
Description = Annotated[str, Meta(max_length=10_000)]


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Unknown fields are refused (422): a typo or an attempt to set a server-owned field is visible."""


class KnowledgeBaseCreate(Body):
    name: Name
    description: Description = ""


class KnowledgeBaseUpdate(Body):
    name: Name | None = None
    description: Description | None = None


class FileUpdate(Body):
    """Replace a file's tags and/or metadata (omitted fields are kept); chunks are relabelled, not re-embedded."""

    tags: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=32)] | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = None  # checked by engine.metadata (keys, types, sizes)


class SearchBody(Body):
    query: Annotated[str, Meta(min_length=1, max_length=4000)]
    top_k: Annotated[int, Meta(ge=1, le=10_000)] = 10
    mode: Literal["dense", "sparse", "hybrid"] = "hybrid"
    fusion: Literal["rrf", "dbsf"] = "dbsf"
    kb_ids: Annotated[list[Id], Meta(max_length=100)] | None = None
    file_ids: Annotated[list[Id], Meta(max_length=1000)] | None = None
    file_types: Annotated[list[Annotated[str, Meta(max_length=16)]], Meta(max_length=20)] | None = None
    tags: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=50)] | None = None
    # {key: value} or {key: [accepted values]}: every key must match (engine.metadata)
    metadata: Annotated[dict[MetadataKey, MetadataScalar | list[MetadataScalar]], Meta(max_length=16)] | None = None
    page_from: Annotated[int, Meta(ge=0, le=1_000_000)] | None = None
    page_to: Annotated[int, Meta(ge=0, le=1_000_000)] | None = None
    created_after: Annotated[float, Meta(ge=0, le=1e11)] | None = None
    created_before: Annotated[float, Meta(ge=0, le=1e11)] | None = None
    neighbors: Annotated[int, Meta(ge=0, le=3)] = 0
    group_by: Literal["chunk", "file"] = "chunk"  # "file": one hit per file, ranked by its best chunk


class Citation(msgspec.Struct, frozen=True, kw_only=True):
    file_id: str
    file_name: str
    page: int | None
    chunk_id: str
    ordinal: int
    heading_path: list[str]
    char_start: int
    char_end: int


class SearchResult(msgspec.Struct, frozen=True, kw_only=True):
    chunk_id: str
    text: str
    score: float
    file_id: str
    file_name: str
    file_type: str
    kb_id: str
    page: int | None
    heading_path: list[str]
    ordinal: int
    char_start: int
    char_end: int
    tags: list[str]
    metadata: dict[str, MetadataValue]
    citation: Citation
    before: list[str] = []
    after: list[str] = []


class UploadResult(msgspec.Struct, frozen=True, kw_only=True):
    """One file of a multi-file upload: either ``file`` or ``error``/``code`` is set."""

    name: str
    file: object | None = None
    error: str | None = None
    code: str | None = None

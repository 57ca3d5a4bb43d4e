"""What the ingest services hand back: plain values, never ORM rows."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

import msgspec

from engine.db.models import File, KnowledgeBase
from engine.ids import utc, utc_or_none
from engine.types import MetadataValue

T = TypeVar("T")


class KnowledgeBaseInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    workspace_id: str
    name: str
    description: str
    created_at: datetime
    updated_at: datetime
    file_count: int = 0

    @classmethod
    def of(cls, row: KnowledgeBase, file_count: int = 0) -> KnowledgeBaseInfo:
        return cls(
            id=row.id,
            workspace_id=row.workspace_id,
            name=row.name,
            description=row.description,
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
            file_count=file_count,
        )


class FileInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kb_id: str
    name: str
    size: int
    sha256: str
    mime: str
    file_type: str
    tags: list[str]
    metadata: dict[str, MetadataValue]
    status: str
    error: str | None
    warnings: list[str]
    attempts: int
    pages_total: int
    pages_done: int
    chunks_total: int
    chunks_done: int
    progress: float
    parse_ms: float | None
    embed_ms: float | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duplicate: bool = False

    @classmethod
    def of(cls, row: File, *, duplicate: bool = False) -> FileInfo:
        if row.status == "ready":
            progress = 1.0
        elif row.chunks_total:
            progress = round(0.1 + 0.9 * row.chunks_done / row.chunks_total, 3)
        else:
            progress = 0.0
        return cls(
            id=row.id,
            kb_id=row.kb_id,
            name=row.name,
            size=row.size,
            sha256=row.sha256,
            mime=row.mime,
            file_type=row.file_type,
            tags=list(row.tags or []),
            metadata=dict(row.meta or {}),
            status=row.status,
            error=row.error,
            warnings=list(row.warnings or []),
            attempts=row.attempts,
            pages_total=row.pages_total,
            pages_done=row.pages_done,
            chunks_total=row.chunks_total,
            chunks_done=row.chunks_done,
            progress=progress,
            parse_ms=row.parse_ms,
            embed_ms=row.embed_ms,
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
            started_at=utc_or_none(row.started_at),
            finished_at=utc_or_none(row.finished_at),
            duplicate=duplicate,
        )


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One page of a list; ``total`` counts every matching row."""

    items: list[T]
    page: int
    limit: int
    total: int

"""What the index switcher hands back (``ingest.switch``): plain values, never ORM rows."""

from __future__ import annotations

from datetime import datetime

import msgspec

from engine.db.models import IndexSwitch
from engine.ids import utc, utc_or_none


class IndexInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a knowledge base's search runs on now."""

    kb_id: str
    collection: str  # "default": the shared collection
    embedder: str
    dim: int
    chunk_tokens: int
    chunk_overlap: int


class SwitchInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kb_id: str
    status: str  # building | evaluating | ready | swapped | cancelled | failed
    embedder: str
    chunk_tokens: int
    chunk_overlap: int
    source_collection: str  # "default": the shared collection
    target_collection: str
    auto_swap: bool
    grace_s: float
    golden_set_id: str | None
    files_total: int
    files_done: int
    chunks_done: int
    progress: float
    evaluation_live_id: str | None
    evaluation_shadow_id: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    swapped_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: IndexSwitch) -> SwitchInfo:
        done = row.status in ("ready", "swapped")
        progress = 1.0 if done else round(row.files_done / row.files_total, 3) if row.files_total else 0.0
        return cls(
            id=row.id, kb_id=row.kb_id, status=row.status, embedder=row.embedder, chunk_tokens=row.chunk_tokens,
            chunk_overlap=row.chunk_overlap, source_collection=row.source_collection or "default",
            target_collection=row.target_collection, auto_swap=row.auto_swap, grace_s=row.grace_s,
            golden_set_id=row.golden_set_id, files_total=row.files_total, files_done=row.files_done,
            chunks_done=row.chunks_done, progress=progress, evaluation_live_id=row.evaluation_live_id,
            evaluation_shadow_id=row.evaluation_shadow_id, error=row.error, created_at=utc(row.created_at),
            updated_at=utc(row.updated_at), swapped_at=utc_or_none(row.swapped_at),
            finished_at=utc_or_none(row.finished_at),
        )  # fmt: skip

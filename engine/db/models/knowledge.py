"""Knowledge bases, their files, vector collections and index switches, golden sets and evaluations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine.db.models.base import Base, now


class KnowledgeBase(Base):
    __tablename__ = "knowledge_bases"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class File(Base):
    """One uploaded file and its ingest job (status is the durable queue)."""

    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("kb_id", "sha256", name="uq_files_kb_sha256"),
        Index("ix_files_queue", "status", "next_attempt_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    mime: Mapped[str] = mapped_column(String(100))
    file_type: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # user metadata (engine.metadata rules)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|processing|ready|failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)  # e.g. pages that failed to parse
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    pages_total: Mapped[int] = mapped_column(Integer, default=0)
    pages_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    parse_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    embed_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class KbCollection(Base):
    """A vector collection of one knowledge base's own (revision 0010): its embedder and chunking.

    ``state`` is the pointer: the knowledge base's ``live`` collection is what search reads (none: the default
    collection); ``building`` is a switch's shadow; ``retired`` waits out its grace period (``drop_after``) before
    it is dropped. No foreign key: the row outlives its knowledge base until the collection itself is dropped.
    """

    __tablename__ = "kb_collections"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    kb_id: Mapped[str] = mapped_column(String(40), index=True)
    embedder: Mapped[str] = mapped_column(String(200))  # a name of engine.embedders.EmbedderCatalog
    dim: Mapped[int] = mapped_column(Integer)
    chunk_tokens: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="building")  # building | live | retired | dropped
    drop_after: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class IndexSwitch(Base):
    """Re-embedding a knowledge base into a new collection while search answers from the live one (revision 0010).

    ``status``: building -> (evaluating ->) ready -> swapped, or cancelled / failed (the live collection untouched).
    """

    __tablename__ = "index_switches"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="building")
    embedder: Mapped[str] = mapped_column(String(200))
    chunk_tokens: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    source_collection: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: the default one
    target_collection: Mapped[str] = mapped_column(String(64))
    auto_swap: Mapped[bool] = mapped_column(Boolean, default=True)
    grace_s: Mapped[float] = mapped_column(Float, default=60.0)
    golden_set_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    files_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    evaluation_live_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    evaluation_shadow_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)
    swapped_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class GoldenSet(Base):
    """A knowledge base's golden set: queries with the files or chunks that should be found, graded (revision
    0010; ``engine.evaluation.golden`` says what a query holds)."""

    __tablename__ = "golden_sets"
    __table_args__ = (UniqueConstraint("kb_id", "name", name="uq_golden_set_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    queries: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{id, query, files | chunks: {ref: grade}}]
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class Evaluation(Base):
    """One evaluation of a knowledge base: a golden set run in every search mode, with its metrics (revision 0010).

    The history per knowledge base: each row keeps the settings it ran with (``config``: embedder, chunking,
    collection), so a change of model, chunking or fusion can be compared with the rows before it.
    """

    __tablename__ = "evaluations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    golden_set_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the set may be deleted later
    golden_set_name: Mapped[str] = mapped_column(String(200), default="")
    label: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | succeeded | failed
    switch_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)  # an index switch's check
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    queries: Mapped[int] = mapped_column(Integer, default=0)
    results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # engine.evaluation.EvaluationReport
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now, index=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)

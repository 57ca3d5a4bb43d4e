"""The embedding stage of the ingest worker: batches that fill across files, and what each batch carries.

Why: SciFact-like corpora have ~2 chunks per file. Embedding one file at a time ran the model on batches of
two, at a third of the throughput a batch of 32 gets, and left the model idle while the next file was parsed
and its SQL progress committed. Preparers (parse, chunk) feed a queue of ``Job``s; one embed loop takes as
many chunks as are waiting, across files, up to one batch (it never waits for a batch to fill: under load the
queue has filled while the previous batch ran); one writer stores the vectors of the previous batch while the
next one is embedded. Slices of a long file go through in order, one batch at a time.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.types import ChunkRecord, MetadataValue, SparseVector, VectorPoint
from ingest.chunking import ChunkDraft


@dataclass(frozen=True)
class FileJob:
    """The fields of a file row a job needs, detached from the session."""

    id: str
    workspace_id: str
    kb_id: str
    name: str
    sha256: str
    file_type: str
    tags: list[str]
    metadata: dict[str, MetadataValue]
    created_at: float
    fresh: bool = False  # its first attempt, never chunked before: no points of an earlier attempt to clear
    own_index: bool = False  # its knowledge base had a live collection of its own when the file was claimed


@dataclass(eq=False)
class Job:
    """One parsed file on its way through the embedder and the writer."""

    file: FileJob
    drafts: list[ChunkDraft]
    taken: int = 0  # chunks handed to the embedder so far
    written: int = 0  # chunks stored (hidden until the file is published)
    cancelled: bool = False  # failed or deleted meanwhile: its remaining slices are dropped
    embed_started: float | None = None
    # progress columns not written yet: a file that fits one batch gets them with its final status, one commit
    deferred: dict[str, object] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return len(self.drafts) - self.taken

    @property
    def complete(self) -> bool:
        return self.written == len(self.drafts)


@dataclass(frozen=True)
class Slice:
    """Consecutive chunks ``drafts[start:end]`` of one job inside one embedding batch."""

    job: Job
    start: int
    end: int

    @property
    def drafts(self) -> list[ChunkDraft]:
        return self.job.drafts[self.start : self.end]


@dataclass
class Batch:
    slices: list[Slice]
    dense: list[list[float]] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [draft.embed_text for s in self.slices for draft in s.drafts]

    @property
    def jobs(self) -> list[Job]:
        return list(dict.fromkeys(s.job for s in self.slices))

    def pieces(self) -> list[tuple[Slice, list[list[float]]]]:
        """Each slice with its rows of ``dense``."""
        out, offset = [], 0
        for piece in self.slices:
            size = piece.end - piece.start
            out.append((piece, self.dense[offset : offset + size]))
            offset += size
        return out


def take_batch(pending: deque[Job], size: int) -> Batch:
    """Up to ``size`` chunks from the head of ``pending``: whole small files, a long file in pieces.

    Jobs that are fully taken (or cancelled) leave ``pending``; a partly taken job stays at its head.
    """
    slices: list[Slice] = []
    room = size
    while pending and room > 0:
        job = pending[0]
        if job.cancelled or job.remaining <= 0:
            pending.popleft()
            continue
        count = min(room, job.remaining)
        if job.embed_started is None:
            job.embed_started = time.perf_counter()
        slices.append(Slice(job, job.taken, job.taken + count))
        job.taken += count
        room -= count
        if job.remaining == 0:
            pending.popleft()
    return Batch(slices)


def waiting_chunks(pending: deque[Job]) -> int:
    return sum(job.remaining for job in pending if not job.cancelled)


def chunk_id(file_id: str, ordinal: int) -> str:
    """Deterministic point id: re-ingesting a file replaces its points instead of duplicating them."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ragline:{file_id}:{ordinal}"))


def vector_points(
    pieces: Sequence[tuple[Slice, list[list[float]]]], sparse: Sequence[SparseVector]
) -> list[VectorPoint]:
    """The points of embedded slices (``sparse``: one vector per chunk, in the same order)."""
    points: list[VectorPoint] = []
    for piece, dense in pieces:
        file = piece.job.file
        for draft, vector in zip(piece.drafts, dense, strict=True):
            record = ChunkRecord(
                id=chunk_id(file.id, draft.ordinal),
                workspace_id=file.workspace_id,
                kb_id=file.kb_id,
                file_id=file.id,
                file_name=file.name,
                file_type=file.file_type,
                ordinal=draft.ordinal,
                text=draft.text,
                page=draft.page,
                heading_path=tuple(draft.heading_path),
                char_start=draft.char_start,
                char_end=draft.char_end,
                tags=tuple(file.tags),
                created_at=file.created_at,
                metadata=dict(file.metadata),
            )
            points.append(VectorPoint(chunk=record, dense=vector, sparse=sparse[len(points)]))
    return points

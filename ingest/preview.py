"""Ingest preview (``?dry_run=true``, ``ragline ingest --dry-run``): what an upload would cost, nothing stored.

The file is parsed in the same sandbox and chunked by the same code (``parse_and_chunk``) with the same settings
and the same embedder window as the ingest worker, so the chunk count is the real one, and the warnings are the
ones the file would get (a parse failure or an empty text is reported as ``would_fail``, a file already in the
knowledge base as ``duplicate_of``). Nothing is embedded, stored or recorded.

The embedding time is estimated from a measured throughput: ``ThroughputMeter`` times the embedder (and the
BM25 encoder) on synthetic chunks of the knowledge base's chunk size, in batches like the worker's, on this
machine as loaded right now. The measurement is reused for ``ttl_s`` seconds (it costs about a second of CPU),
and the estimate is the document's model tokens divided by the measured tokens per second.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO

import anyio.to_thread
import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.db.models import File, KnowledgeBase
from engine.db.scoped import get_in_workspace
from engine.errors import EngineError, InvalidInput, PayloadTooLarge
from engine.ids import now
from engine.ports import Embedder, SparseEncoder
from engine.routing import Index
from ingest.chunking import ChunkDraft
from ingest.loaders import detect_file_type
from ingest.parsed import ParsedDocument
from ingest.prepare import IngestConfig, PermanentFailure, parse_and_chunk
from ingest.service import SNIFF_BYTES, sanitize_filename
from ingest.worker import EMBED_BATCH

# the knowledge base's own index, if it has one (ingest.indexes.SqlIndexDirectory.live_index)
IndexLookup = Callable[[str, str], Awaitable[Index | None]]
CALIBRATION_BATCHES = 2  # batches of EMBED_BATCH synthetic chunks per measurement (~1 s of CPU at 200 tokens)
DEFAULT_TTL_S = 300.0


class Throughput(msgspec.Struct, frozen=True, kw_only=True):
    """A measured embedding throughput: what the time estimate is based on."""

    tokens_per_s: float  # model word-pieces embedded (dense + BM25) per second
    chunks_per_s: float
    sample_chunks: int
    sample_tokens: int
    measured_at: float  # unix seconds
    source: str = "calibration"


class ThroughputMeter:
    """Measures an embedder's throughput on this machine now (synthetic chunks, the worker's batch size)."""

    def __init__(self, embedder: Embedder, sparse: SparseEncoder, *, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.embedder = embedder
        self.sparse = sparse
        self.ttl_s = ttl_s
        self._last: dict[int, Throughput] = {}  # per chunk size
        self._lock = asyncio.Lock()

    @property
    def latest(self) -> Throughput | None:
        """The most recent measurement, if any."""
        return max(self._last.values(), key=lambda t: t.measured_at, default=None)

    async def current(self, chunk_tokens: int) -> Throughput:
        """The last measurement for this chunk size if younger than ``ttl_s``, else a new one."""
        async with self._lock:
            last = self._last.get(chunk_tokens)
            if last is None or now() - last.measured_at >= self.ttl_s:
                last = self._last[chunk_tokens] = await self.measure(chunk_tokens)
            return last

    async def measure(self, chunk_tokens: int) -> Throughput:
        texts = calibration_texts(chunk_tokens, EMBED_BATCH * CALIBRATION_BATCHES, self.embedder.max_tokens)
        tokens = sum(await anyio.to_thread.run_sync(lambda: [self.embedder.token_count(t) for t in texts]))
        await self.embedder.embed_documents(texts[:2])  # loaded and warm: the first call may load the model
        started = time.perf_counter()
        for offset in range(0, len(texts), EMBED_BATCH):
            batch = texts[offset : offset + EMBED_BATCH]
            await self.embedder.embed_documents(batch)
            await anyio.to_thread.run_sync(self.sparse.encode_documents, batch)
        seconds = max(time.perf_counter() - started, 1e-6)
        return Throughput(
            tokens_per_s=round(tokens / seconds, 1), chunks_per_s=round(len(texts) / seconds, 2),
            sample_chunks=len(texts), sample_tokens=tokens, measured_at=now(),
        )  # fmt: skip


def calibration_texts(chunk_tokens: int, count: int, max_tokens: int) -> list[str]:
    """Deterministic English-like chunks as long as real ones: ``chunk_tokens`` cl100k tokens are ~1.2 word-pieces
    each in English (these words are one word-piece each), within the model's window."""
    rng = random.Random(19)
    words = max(8, min(int(chunk_tokens * 1.2), max_tokens - 2))
    return [" ".join(rng.choice(_WORDS) for _ in range(words)) + "." for _ in range(count)]


_VOCABULARY = (
    "the policy employees receive paid leave per year and may carry over unused days with approval from their "
    "manager when the request is submitted through the portal before the end of the quarter each team reviews "
    "expenses travel equipment training budget contract customer report analysis results growth revenue market "
    "product service quality safety health insurance benefits office remote schedule meeting project deadline "
    "research data model system network security access account payment invoice tax audit compliance"
)
_WORDS = tuple(_VOCABULARY.split())


class PreviewInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    file_type: str
    size: int
    sha256: str
    pages: int
    chunks: int
    tokens: int  # the embedder's word-pieces over every chunk (what embedding costs)
    embed_seconds: float | None  # estimated embedding time on this machine (None when the ingest would fail)
    throughput: Throughput | None  # what the estimate is based on
    parse_ms: float
    warnings: list[str]  # what the file's ingest would record
    would_fail: str | None  # the reason a real ingest would fail, if it would
    duplicate_of: str | None  # a file of the knowledge base with the same content: an upload would not re-ingest it
    embedder: str
    chunk_tokens: int
    chunk_overlap: int


class IngestPreviewer:
    """Previews uploads against a knowledge base without storing anything."""

    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], embedder: Embedder, sparse: SparseEncoder,
        config: IngestConfig, max_upload_bytes: int, index_for: IndexLookup | None = None,
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.embedder = embedder
        self.sparse = sparse
        self.config = config
        self.max_upload_bytes = max_upload_bytes
        self.index_for = index_for
        self.meter = ThroughputMeter(embedder, sparse)
        self._meters: dict[int, ThroughputMeter] = {id(embedder): self.meter}  # one per embedder

    async def _target(self, workspace_id: str, kb_id: str | None) -> tuple[Embedder, IngestConfig]:
        """The embedder and chunking the knowledge base's ingest uses (its own index's, if it has one)."""
        index = await self.index_for(workspace_id, kb_id) if self.index_for is not None and kb_id else None
        if index is None:
            return self.embedder, self.config
        chunking = replace(self.config, chunk_tokens=index.chunk_tokens, chunk_overlap=index.chunk_overlap)
        return index.embedder, chunking

    def _meter(self, embedder: Embedder) -> ThroughputMeter:
        meter = self._meters.get(id(embedder))
        if meter is None:
            meter = self._meters[id(embedder)] = ThroughputMeter(embedder, self.sparse, ttl_s=self.meter.ttl_s)
        return meter

    async def preview(self, workspace_id: str, kb_id: str | None, *, filename: str, source: BinaryIO) -> PreviewInfo:
        """Parse and chunk ``source`` as an upload to ``kb_id`` would be (``None``: a knowledge base to be made).

        Raises:
            NotFound: No such knowledge base. PayloadTooLarge, InvalidInput, UnsupportedMediaType: what the
            real upload would refuse.
        """
        name = sanitize_filename(filename)
        duplicate = None
        data = await anyio.to_thread.run_sync(source.read, self.max_upload_bytes + 1)
        if len(data) > self.max_upload_bytes:
            raise PayloadTooLarge(f"file is larger than the {self.max_upload_bytes} byte limit")
        if not data:
            raise InvalidInput("the file is empty")
        sha = hashlib.sha256(data).hexdigest()
        async with self.sessions() as session:
            if kb_id is not None:
                await get_in_workspace(session, KnowledgeBase, kb_id, workspace_id, "knowledge base")
                duplicate = await session.scalar(select(File.id).where(File.kb_id == kb_id, File.sha256 == sha))
        file_type = detect_file_type(data if data.startswith(b"PK") else data[:SNIFF_BYTES], name)
        embedder, config = await self._target(workspace_id, kb_id)
        target = _Target(name, file_type, data, sha, duplicate, embedder, config, time.perf_counter())
        try:
            parsed, drafts = await anyio.to_thread.run_sync(
                lambda: parse_and_chunk(data, file_type, name, config=config, window=embedder)
            )
        except (PermanentFailure, EngineError) as exc:
            return self._info(target, would_fail=exc.message if isinstance(exc, EngineError) else str(exc))
        tokens = await anyio.to_thread.run_sync(lambda: _tokens(embedder, drafts))
        basis = await self._meter(embedder).current(config.chunk_tokens)
        return self._info(
            target, parsed=parsed, chunks=len(drafts), tokens=tokens,
            embed_seconds=round(tokens / basis.tokens_per_s, 2), throughput=basis,
        )  # fmt: skip

    @staticmethod
    def _info(
        t: _Target, *, parsed: ParsedDocument | None = None, chunks: int = 0, tokens: int = 0,
        embed_seconds: float | None = None, throughput: Throughput | None = None, would_fail: str | None = None,
    ) -> PreviewInfo:  # fmt: skip
        return PreviewInfo(
            name=t.name, file_type=t.file_type, size=len(t.data), sha256=t.sha, chunks=chunks, tokens=tokens,
            pages=parsed.pages_total if parsed else 0, embed_seconds=embed_seconds, throughput=throughput,
            parse_ms=round((time.perf_counter() - t.started) * 1000, 1),
            warnings=list(parsed.warnings) if parsed else [], would_fail=would_fail, duplicate_of=t.duplicate,
            embedder=t.embedder.name, chunk_tokens=t.config.chunk_tokens, chunk_overlap=t.config.chunk_overlap,
        )  # fmt: skip


@dataclass(frozen=True)
class _Target:
    """One previewed file and the settings its ingest would use."""

    name: str
    file_type: str
    data: bytes
    sha: str
    duplicate: str | None
    embedder: Embedder
    config: IngestConfig
    started: float


def _tokens(embedder: Embedder, drafts: Sequence[ChunkDraft]) -> int:
    # what the model sees: each chunk's embed_text, cut at the model's window (the chunker keeps it within)
    return sum(min(embedder.token_count(d.embed_text), embedder.max_tokens) for d in drafts)

"""A file's first step in ingest: parse it (``parse_untrusted``) and cut it into chunks, with the settings it needs.

The ingest worker, a knowledge base's own index (``ingest.indexes``) and the preview (``ingest.preview``) all
prepare a file through ``parse_and_chunk``, so a preview shows exactly what an ingest would store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from ingest.chunking import ChunkDraft, TokenWindow, chunk_document
from ingest.parsed import ParsedDocument, ParseFailure
from ingest.sandbox import parse_untrusted


class PermanentFailure(Exception):
    """The file itself is the problem: retrying cannot help."""


@dataclass(frozen=True)
class IngestConfig:
    chunk_tokens: int = 200
    chunk_overlap: int = 40
    max_chunks: int = 20_000
    parse_timeout_s: float = 60.0
    parse_memory_mb: int = 1536
    max_attempts: int = 3
    workers: int = 1  # preparers beyond the first two (parsing overlaps the embedding either way)


def parse_and_chunk(
    data: bytes, file_type: str, name: str, *, config: IngestConfig, window: TokenWindow
) -> tuple[ParsedDocument, list[ChunkDraft]]:
    """Parse (``parse_untrusted``) and chunk a file exactly as the ingest worker does (blocking: call it in a thread).

    Raises:
        PermanentFailure: The file cannot be parsed or has no text (the ingest would fail with this reason).
        InvalidInput: The file produces more than ``config.max_chunks`` chunks.
    """
    parsed = parse_untrusted(data, file_type, timeout_s=config.parse_timeout_s, memory_mb=config.parse_memory_mb)
    if isinstance(parsed, ParseFailure):
        raise PermanentFailure(parsed.reason)
    drafts = chunk_document(
        parsed, chunk_tokens=config.chunk_tokens, overlap=config.chunk_overlap, max_chunks=config.max_chunks,
        # the document's own title beats its file name; a bare id like "4983.md" is noise
        title=parsed.title or PurePath(name).stem, window=window,
    )  # fmt: skip
    if not drafts:  # nothing with a letter or digit in it: nothing search could find
        detail = "; ".join(w for w in parsed.warnings if w.startswith("text layer looks broken"))
        raise PermanentFailure(f"the file contains no text ({detail})" if detail else "the file contains no text")
    return parsed, drafts

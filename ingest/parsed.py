"""Parser output shared by the loaders, the sandbox and the chunker (msgspec so it crosses processes cheaply)."""

from __future__ import annotations

import msgspec


class Section(msgspec.Struct, frozen=True):
    """A run of text from one page (PDF) or under one heading path (Markdown, HTML, DOCX)."""

    text: str
    page: int | None = None
    heading_path: tuple[str, ...] = ()


class ParsedDocument(msgspec.Struct, frozen=True, tag="document"):
    """Text of a file in reading order; ``warnings`` are user-facing notes (e.g. pages that failed)."""

    file_type: str
    sections: tuple[Section, ...]
    pages_total: int = 0
    warnings: tuple[str, ...] = ()
    title: str | None = None


class ParseFailure(msgspec.Struct, frozen=True, tag="failure"):
    """Parsing failed; ``reason`` is readable and safe to show to the uploader (no traceback, no class names)."""

    reason: str


ParseResult = ParsedDocument | ParseFailure

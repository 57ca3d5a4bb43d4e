"""DOCX via python-docx, behind a zip-bomb guard that measures the real decompressed streams."""

from __future__ import annotations

import copy
import io
import re
import zipfile
import zlib

import docx
from docx.document import Document as DocxDocument
from docx.table import Table
from docx.text.hyperlink import Hyperlink
from docx.text.paragraph import Paragraph

from engine.errors import InvalidInput
from ingest.loaders.limits import TextBudget
from ingest.parsed import ParsedDocument, Section

MAX_UNCOMPRESSED_BYTES = 256 * 1024 * 1024
MAX_ZIP_ENTRIES = 10_000
_READ_BLOCK = 1024 * 1024
_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)


def check_zip_bomb(data: bytes, limit: int = MAX_UNCOMPRESSED_BYTES) -> None:
    """Refuse a ZIP whose declared *or actual* decompressed size exceeds ``limit``, or whose sizes lie.

    The central directory can lie (a small declared size over a huge stream, and zipfile would then
    trust it), so every member is inflated with its declared size ignored, block by block, and
    counted; inflation stops as soon as the running total passes the limit.

    Raises:
        InvalidInput: the archive is too large when unpacked, misstates sizes, has too many entries,
            or is damaged.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ZIP_ENTRIES:
                raise InvalidInput(f"the document has more than {MAX_ZIP_ENTRIES} parts")
            if sum(info.file_size for info in infos) > limit:
                raise _too_big(limit)
            total = 0
            for info in infos:
                total += _inflated_size(archive, info, limit - total, limit)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError) as exc:
        raise InvalidInput("the document's ZIP container is damaged or uses an unsupported compression") from exc


def _too_big(limit: int) -> InvalidInput:
    return InvalidInput(f"the document unpacks to more than {limit // (1024 * 1024)} MB (possible ZIP bomb)")


def _inflated_size(archive: zipfile.ZipFile, info: zipfile.ZipInfo, remaining: int, limit: int) -> int:
    """Real decompressed size of one member, reading at most ``remaining + 1`` bytes of it."""
    unbounded = copy.copy(info)
    unbounded.file_size = 1 << 62  # zipfile stops reading at the declared size; we want the stream's own end
    size = 0
    with archive.open(unbounded) as stream:
        while block := stream.read(_READ_BLOCK):
            size += len(block)
            if size > remaining:
                raise _too_big(limit)
    if size != info.file_size:
        raise InvalidInput("the document's ZIP directory misstates the size of its parts (possible ZIP bomb)")
    return size


def _heading_level(paragraph: Paragraph) -> int:
    """1-9 for Heading N styles, 1 for Title, 0 for body text."""
    try:
        name = paragraph.style.name if paragraph.style is not None else ""
    except (KeyError, AttributeError, ValueError):
        return 0
    name = name or ""
    if name.lower() == "title":
        return 1
    match = _HEADING_STYLE.match(name)
    return int(match.group(1)) if match else 0


def _visible_text(paragraph: Paragraph) -> str:
    """The paragraph's text without hidden runs (``w:vanish``): Word does not show them, and hidden text is a
    classic prompt-injection carrier."""
    if paragraph.style is not None and paragraph.style.font.hidden:
        return ""
    parts: list[str] = []
    for item in paragraph.iter_inner_content():
        runs = item.runs if isinstance(item, Hyperlink) else [item]
        parts.extend(run.text for run in runs if not run.font.hidden)
    return "".join(parts)


def _table_text(table: Table) -> str:
    rows = []
    for row in table.rows:
        cells = ["\n".join(_visible_text(p) for p in cell.paragraphs).strip() for cell in row.cells]
        rows.append(" | ".join(cells))
    return "\n".join(rows)


def _sections(document: DocxDocument, budget: TextBudget) -> tuple[list[Section], str | None]:
    stack: list[tuple[int, str]] = []
    lines: list[str] = []
    sections: list[Section] = []
    title: str | None = None

    def flush() -> None:
        body = "\n\n".join(line for line in lines if line).strip()
        lines.clear()
        if body:
            sections.append(Section(text=budget.take(body), heading_path=tuple(n for _, n in stack)))

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            lines.append(_table_text(block))
            continue
        text = _visible_text(block).strip()
        level = _heading_level(block)
        if level and text:
            flush()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text[:200]))
            title = title or (text[:200] if level == 1 else None)
        else:
            lines.append(text)
    flush()
    return sections, title


def parse_docx(data: bytes) -> ParsedDocument:
    check_zip_bomb(data)
    document = docx.Document(io.BytesIO(data))
    sections, title = _sections(document, TextBudget())
    core_title = (document.core_properties.title or "").strip()
    if not sections:
        raise InvalidInput("the Word document contains no text")
    return ParsedDocument(
        file_type="docx", sections=tuple(sections), pages_total=0, title=core_title[:200] or title
    )

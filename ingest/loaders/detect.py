"""File type detection: an extension allowlist, then content sniffing so a name cannot smuggle another format."""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

from engine.errors import UnsupportedMediaType

EXTENSION_TYPES: dict[str, str] = {
    "pdf": "pdf",
    "txt": "txt",
    "text": "txt",
    "md": "md",
    "markdown": "md",
    "html": "html",
    "htm": "html",
    "docx": "docx",
    "csv": "csv",
    "json": "json",
}

# Magic numbers of formats that must never be read as text (a renamed binary would be indexed as garbage).
_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF"),
    (b"PK\x03\x04", "a ZIP archive (e.g. DOCX/XLSX)"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "a Windows executable"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"Rar!", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0", "an old Office document"),
    (b"\xca\xfe\xba\xbe", "a Java class or Mach-O binary"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O binary"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x00asm", "a WebAssembly module"),
)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SNIFF_BYTES = 8192
_TEXT_TYPES = frozenset({"txt", "md", "html", "csv", "json"})


def _extension(filename: str) -> str:
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix
    return suffix[1:].lower() if suffix else ""


def _binary_kind(head: bytes) -> str | None:
    """Name of the binary format ``head`` starts with, or None when it may be text.

    ``head`` is the first 8 KB of the file. In order:

    1. a known magic number (PDF, ZIP, ELF, PNG, ...) is binary, whatever follows;
    2. UTF-16 (a BOM, or NULs in nearly every other byte) is text;
    3. a handful of stray control bytes (at most ``_STRAY_CONTROLS``: NULs, BELs, ... as left by a bad
       copy-paste or a terminal log) among at least eight times as many bytes that otherwise read as
       text (valid UTF-8, or mostly ASCII for a legacy code page) is text, however short the file:
       the text loader strips them;
    4. otherwise NULs in more than 1 % of the bytes, or other control bytes that never occur in text
       in more than 5 %, is binary (random or compressed data has ~0.4 % NULs and ~11 % such controls,
       packed numbers and headers far more NULs). Below that it is text with a few stray characters.
    """
    stripped = head.lstrip(b"\xef\xbb\xbf")
    for magic, kind in _BINARY_MAGIC:
        if stripped.startswith(magic):
            return kind
    if head.startswith(_UTF16_BOMS):
        return None  # UTF-16 text is full of NULs by design
    nuls = head.count(0)
    nul_share = nuls / max(len(head), 1)
    # UTF-16 without a BOM has NULs in ~half the bytes of ASCII text; the text loader decodes it.
    if nul_share > 0.30 and _looks_like_utf16(head):
        return None
    controls = _control_count(head)  # NULs included
    if controls <= _STRAY_CONTROLS:
        rest = head.translate(None, delete=_CONTROLS)
        if len(rest) >= 8 * controls and _reads_as_text(rest):
            return None
    if nul_share > 0.01 or (controls - nuls) / max(len(head), 1) > 0.05:
        return "binary data"
    return None


_TEXT_CONTROLS = bytes([8, 9, 10, 11, 12, 13, 27])  # backspace, tab, LF, VT, FF, CR, ESC (ANSI colours in logs)
_CONTROLS = bytes(b for b in range(32) if b not in _TEXT_CONTROLS) + b"\x7f"
_NOT_CONTROLS = bytes(set(range(256)) - set(_CONTROLS))
_STRAY_CONTROLS = 8


def _control_count(head: bytes) -> int:
    """Control bytes that never occur in text files, NUL included."""
    return len(head.translate(None, delete=_NOT_CONTROLS))


def _reads_as_text(data: bytes) -> bool:
    """Valid UTF-8 (a sequence cut at the end of the sniffed head allowed), or mostly ASCII."""
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
            return True
    high = len(data) - len(data.translate(None, delete=bytes(range(128, 256))))
    return high / max(len(data), 1) < 0.25


def _looks_like_utf16(head: bytes) -> bool:
    even, odd = head[0::2], head[1::2]
    return even.count(0) / max(len(even), 1) > 0.9 or odd.count(0) / max(len(odd), 1) > 0.9


def _check_docx(data: bytes) -> None:
    if not data.startswith(b"PK\x03\x04"):
        raise UnsupportedMediaType("the file is named .docx but is not a Word document (not a ZIP container)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise UnsupportedMediaType("the file is named .docx but its ZIP container is damaged") from exc
    if "word/document.xml" not in names:
        raise UnsupportedMediaType("the file is named .docx but has no Word document body (word/document.xml)")


def detect_file_type(data: bytes, filename: str) -> str:
    """Return the canonical file type (``pdf``, ``txt``, ``md``, ``html``, ``docx``, ``csv``, ``json``).

    Raises:
        UnsupportedMediaType: the extension is not allowed, or the content contradicts it.
    """
    ext = _extension(filename)
    file_type = EXTENSION_TYPES.get(ext)
    if file_type is None:
        allowed = ", ".join(sorted({f".{e}" for e in EXTENSION_TYPES}))
        shown = f".{ext}" if ext else "no extension"
        raise UnsupportedMediaType(f"file type {shown} is not supported (allowed: {allowed})")
    if not data:
        raise UnsupportedMediaType("the file is empty")
    if file_type == "pdf":
        # The PDF spec lets a header start within the first 1024 bytes; pypdf accepts that too.
        if b"%PDF-" not in data[:1024]:
            raise UnsupportedMediaType("the file is named .pdf but is not a PDF (no %PDF header)")
    elif file_type == "docx":
        _check_docx(data)
    elif file_type in _TEXT_TYPES:
        kind = _binary_kind(data[:_SNIFF_BYTES])
        if kind is not None:
            raise UnsupportedMediaType(f"the file is named .{ext} but contains {kind}, not text")
    return file_type

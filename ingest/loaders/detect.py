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
    """Name of the binary format ``head`` starts with, or None when it may be text."""
    stripped = head.lstrip(b"\xef\xbb\xbf")
    for magic, kind in _BINARY_MAGIC:
        if stripped.startswith(magic):
            return kind
    if head.startswith(_UTF16_BOMS):
        return None  # UTF-16 text is full of NULs by design
    nul_share = head.count(0) / max(len(head), 1)
    # UTF-16 without a BOM has NULs in ~half the bytes of ASCII text; the text loader decodes it.
    if nul_share > 0.30 and _looks_like_utf16(head):
        return None
    if nul_share > 0.01 or _control_share(head) > 0.05:
        return "binary data"
    return None


_TEXT_CONTROLS = bytes([8, 9, 10, 12, 13, 27])  # backspace, tab, LF, FF, CR, ESC (ANSI colours in logs)
_CONTROLS = bytes(b for b in range(32) if b not in _TEXT_CONTROLS) + b"\x7f"


def _control_share(head: bytes) -> float:
    """Share of control bytes that never occur in text files (random/compressed data has ~11%)."""
    kept = head.translate(None, delete=bytes(set(range(256)) - set(_CONTROLS)))
    return len(kept) / max(len(head), 1)


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

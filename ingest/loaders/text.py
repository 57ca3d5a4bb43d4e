"""Plain text: encoding detection (BOM, UTF-8, UTF-16, legacy code pages) and normalisation.

Control characters: a text file may carry a few stray NULs or other control characters (a bad
copy-paste, a terminal log with a BEL or ANSI escapes, a C1 byte from a Latin-1 round trip). Such a
file is text: ``clean_text`` removes NUL and the C0/C1 controls (U+0000-U+001F, U+007F-U+009F) except
tab and the line breaks, which become ``\n`` (CR, CRLF, form feed, vertical tab, NEL U+0085), so words
on either side of a page or line break are never glued together; ANSI escape sequences (``ESC [ 31 m``)
go whole, not just their ESC.

Which files are binary rather than text with stray controls is decided on the first 8 KB by
``ingest.loaders.detect`` before any loader runs: a known magic number (PNG, ELF, ZIP, PDF, ...) is
binary; at most 8 control bytes in otherwise readable text is text however short the file; beyond
that, NULs in more than 1 % of the bytes or other never-in-text controls in more than 5 % is binary.
"""

from __future__ import annotations

import codecs
import re

import charset_normalizer

from engine.errors import InvalidInput
from ingest.loaders.limits import TextBudget
from ingest.parsed import ParsedDocument, Section

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SURROGATES = re.compile("[\ud800-\udfff]")
# Line breaks other than \n: CRLF, CR, form feed (page break), vertical tab (a line break in Word
# exports), NEL (U+0085), all to \n.
_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x85]")
# ANSI escape sequences of terminal logs (colours, cursor moves): ESC [, parameters, intermediates,
# final byte. Linear: the three classes are disjoint.
_ANSI_CSI = re.compile("\x1b\\[[0-?]*[ -/]*[@-~]")
# C0 controls other than tab/newline, DEL and the C1 controls: noise for search and for the embedder.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")


def _bomless_utf16(data: bytes) -> str | None:
    head = data[:4096]
    even, odd = head[0::2], head[1::2]
    if len(head) >= 4 and odd.count(0) / len(odd) > 0.9:
        return "utf-16-le"
    if len(head) >= 4 and even.count(0) / len(even) > 0.9:
        return "utf-16-be"
    return None


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding to a clean ``str`` with ``\\n`` newlines.

    Raises:
        InvalidInput: the bytes are not text in any encoding we can detect.
    """
    return clean_text(_decode(data))


def clean_text(text: str) -> str:
    """Normalise line breaks to ``\n`` and drop NULs, other C0/C1 controls, lone surrogates and BOMs."""
    text = _LINE_BREAKS.sub("\n", text)
    if "\x1b[" in text:
        text = _ANSI_CSI.sub("", text)
    text = _SURROGATES.sub("", _CONTROL.sub("", text))
    return text.replace("\ufeff", "")


def _decode(data: bytes) -> str:
    for bom, name in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(name, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    utf16 = _bomless_utf16(data)
    if utf16 is not None:
        return data.decode(utf16, errors="replace")
    legacy = _legacy_encoding(data[:200_000])
    if legacy is None:
        # mostly-UTF-8 with a few broken bytes (a truncated or concatenated file): keep the readable part
        return data.decode("utf-8", errors="replace")
    return data.decode(legacy, errors="replace")


def _legacy_encoding(sample: bytes) -> str | None:
    """charset-normalizer's pick, but cp1252 wins ties: it is by far the most common legacy encoding,
    and short Western text scores identically under cp1250/cp1257 (which would turn "è" into "č")."""
    matches = list(charset_normalizer.from_bytes(sample))
    if not matches:
        return None
    best = matches[0]
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= best.chaos and match.coherence >= best.coherence - 0.01:
            return "cp1252"
    return str(best.encoding)


def split_paragraph_sections(text: str, budget: TextBudget) -> tuple[Section, ...]:
    """One section for the whole text (the chunker splits at paragraphs itself)."""
    stripped = budget.take(text.strip())
    return (Section(text=stripped),) if stripped else ()


def parse_text(data: bytes) -> ParsedDocument:
    text = decode_text(data)
    sections = split_paragraph_sections(text, TextBudget())
    if not sections:
        raise InvalidInput("the file contains no text")
    return ParsedDocument(file_type="txt", sections=sections, pages_total=0, title=None)

"""File loaders: detect a file's type from name and content, and parse it into a ``ParsedDocument``.

``parse_document`` runs in the caller's process; untrusted uploads should go through
``ingest.sandbox.parse_in_sandbox``, which runs it in a child process with time and memory budgets.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.errors import InvalidInput
from ingest.loaders.detect import EXTENSION_TYPES, detect_file_type
from ingest.loaders.docx import parse_docx
from ingest.loaders.html import parse_html
from ingest.loaders.markdown import parse_markdown
from ingest.loaders.pdf import parse_pdf
from ingest.loaders.tabular import parse_csv, parse_json
from ingest.loaders.text import parse_text
from ingest.parsed import ParsedDocument

PARSERS: dict[str, Callable[[bytes], ParsedDocument]] = {
    "pdf": parse_pdf,
    "txt": parse_text,
    "md": parse_markdown,
    "html": parse_html,
    "docx": parse_docx,
    "csv": parse_csv,
    "json": parse_json,
}

_KIND_NAMES = {"pdf": "PDF", "txt": "text", "md": "Markdown", "html": "HTML", "docx": "Word", "csv": "CSV"}


def parse_document(data: bytes, file_type: str) -> ParsedDocument:
    """Parse ``data`` of a type returned by ``detect_file_type``.

    Raises:
        InvalidInput: the file cannot be parsed; ``message`` is a readable reason. No other exception
            escapes except ``MemoryError`` (the sandbox turns it into a memory-budget failure).
    """
    parser = PARSERS.get(file_type)
    if parser is None:
        raise InvalidInput(f"unsupported file type {file_type!r}")
    try:
        return parser(data)
    except (InvalidInput, MemoryError):
        raise
    except RecursionError as exc:
        raise InvalidInput(f"the {_kind(file_type)} file is nested too deeply to read") from exc
    except Exception as exc:  # a parser library bug on hostile input must read as a bad file, not a crash
        raise InvalidInput(f"the {_kind(file_type)} file is damaged or malformed and could not be read") from exc


def _kind(file_type: str) -> str:
    return _KIND_NAMES.get(file_type, file_type.upper())


__all__ = ["EXTENSION_TYPES", "PARSERS", "detect_file_type", "parse_document"]

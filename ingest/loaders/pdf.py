"""PDF text per page with pypdf: good pages are kept, bad pages become warnings, failures are readable.

Text that was extracted but looks broken (font maps giving (cid:NN), private-use or replacement
characters; an OCR layer of noise) is kept and indexed, with a warning saying why search may miss it
(``ingest.normalize.text_warnings``).
"""

from __future__ import annotations

import io
import logging
import warnings

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

from engine.errors import InvalidInput
from ingest.loaders.limits import TextBudget
from ingest.loaders.text import clean_text
from ingest.normalize import text_warnings
from ingest.parsed import ParsedDocument, Section

MAX_PAGES = 10_000
NO_TEXT_REASON = "no extractable text (scanned PDF? OCR is not supported)"
PASSWORD_REASON = "the PDF is password-protected; remove the password and upload it again"
DAMAGED_REASON = "the PDF is damaged or malformed and could not be opened"

# pypdf logs a warning per recoverable defect; on hostile files that is thousands of lines of noise.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def _open(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except MemoryError:
        raise  # the sandbox reports the memory budget
    except DependencyError as exc:
        raise InvalidInput("the PDF uses an encryption method that is not supported") from exc
    except (PyPdfError, Exception) as exc:
        raise InvalidInput(DAMAGED_REASON) from exc
    _decrypt(reader)
    return reader


def _decrypt(reader: PdfReader) -> None:
    try:
        if not reader.is_encrypted:
            return
        # An empty user password is common ("owner password only" PDFs); anything else we cannot open.
        if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise InvalidInput(PASSWORD_REASON)
    except (InvalidInput, MemoryError):
        raise
    except (FileNotDecryptedError, NotImplementedError, DependencyError) as exc:
        raise InvalidInput("the PDF uses an encryption method that is not supported") from exc
    except Exception as exc:
        raise InvalidInput(DAMAGED_REASON) from exc


def _page_count(reader: PdfReader) -> int:
    try:
        count = len(reader.pages)
    except FileNotDecryptedError as exc:
        raise InvalidInput(PASSWORD_REASON) from exc
    except MemoryError:
        raise
    except Exception as exc:
        raise InvalidInput("the PDF's page tree is damaged and its pages could not be listed") from exc
    if count > MAX_PAGES:
        raise InvalidInput(f"the PDF has more than {MAX_PAGES:,} pages")
    return count


def _page_text(reader: PdfReader, index: int) -> str:
    """Text of one page; ``MemoryError`` propagates so the sandbox reports the memory budget, not a bad page."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clean_text(reader.pages[index].extract_text()).strip()


def _title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:
        return None  # unreadable metadata must not sink an otherwise readable file
    if not isinstance(title, str):
        return None
    return clean_text(title).strip()[:200] or None


def _describe_pages(pages: list[int]) -> str:
    shown = ", ".join(str(p) for p in pages[:20])
    return shown + (f" and {len(pages) - 20} more" if len(pages) > 20 else "")


def parse_pdf(data: bytes) -> ParsedDocument:
    reader = _open(data)
    count = _page_count(reader)
    budget = TextBudget()
    sections: list[Section] = []
    bad_pages: list[int] = []
    for index in range(count):
        try:
            text = _page_text(reader, index)
        except MemoryError:
            raise
        except FileNotDecryptedError as exc:
            raise InvalidInput(PASSWORD_REASON) from exc
        except Exception:  # pypdf escapes many classes on hostile input (AttributeError, RecursionError, ...)
            bad_pages.append(index + 1)
            continue
        if text:
            sections.append(Section(text=budget.take(text), page=index + 1))
    if not sections:
        if bad_pages:
            raise InvalidInput(f"none of the PDF's {count} pages could be read (the file is damaged)")
        raise InvalidInput(NO_TEXT_REASON if count else "the PDF has no pages")
    notes: tuple[str, ...] = (
        (f"text could not be extracted from page(s) {_describe_pages(bad_pages)}",) if bad_pages else ()
    )
    notes += text_warnings((s.page, s.text) for s in sections)
    return ParsedDocument(
        file_type="pdf", sections=tuple(sections), pages_total=count, warnings=notes, title=_title(reader)
    )

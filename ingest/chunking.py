"""Token-based chunking of a ``ParsedDocument`` into ``ChunkDraft``s ready for embedding.

Rules: chunks are measured in cl100k tokens, overlap by ``overlap`` tokens, never cross a section
(so never a page boundary or a heading change), and end preferably at a paragraph, else a sentence,
else a word boundary. A chunk without a letter or digit (a section of ``>``, ``---`` or dots) is
dropped: there is nothing in it to find.

Two texts per chunk: ``text`` is the original (shown in results, quoted by citations); ``embed_text``
is what is embedded and BM25-encoded: a short title / heading-path prefix plus the chunk text
normalised for indexing (``ingest.normalize.index_text``: NFKC, so ligatures such as U+FB01 index as
"fi", whitespace collapsed; in PDFs also words hyphenated at line ends joined and fake-bold doubling undone).
``embed_text`` is *guaranteed* to fit the embedder's window, checked with the model's own word-piece
tokenizer on the normalised text: cl100k counts alone are not enough (Russian text runs ~2.2
word-pieces per cl100k token, Korean ~1.6, URLs ~1.5, English/code ~1.2; NFKC can expand a character
into many), so a chunk that would overflow is cut shorter.

Cost is linear in the input: every chunk's text, window count and normalisation is bounded by the
chunk size, and a prefix is computed from headings cut to a bounded length first.

Offsets: ``char_start``/``char_end`` index into ``document_text(doc)``, the sections' texts joined
with ``SECTION_SEPARATOR``; ``document_text(doc)[c.char_start:c.char_end] == c.text`` always holds.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable
from typing import Protocol

import msgspec

from engine.errors import InvalidInput
from engine.tokens import encoding
from ingest.normalize import has_words, index_text
from ingest.parsed import ParsedDocument

SECTION_SEPARATOR = "\n\n"
PREFIX_TOKENS = 24
# A heading or title is cut to this many characters before the prefix is built: the prefix keeps only
# PREFIX_TOKENS tokens (~100 characters of real text), and a megabyte heading above thousands of sections
# must not be re-encoded for every one of them.
_PREFIX_SOURCE_CHARS = 1024
# cl100k's BPE slows down more than linearly on one very long pre-token (a megabyte of "." or of letters
# without a space), so a run of non-space characters is encoded in pieces of at most this many characters.
# Ordinary text never has such a run; in pathological text a token boundary at the cut is harmless.
_MAX_RUN_CHARS = 4096
_NON_SPACE_RUN = re.compile(r"\S+")
_SPECIAL_TOKENS = 2  # kept free in the window for the model's own markers ([CLS] and [SEP] for BERT models)
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?:[.!?;:][\"')\]]*(?=\s)|[\u3002\uff01\uff1f\uff1b])")  # CJK full stop, !, ?, ;
_LINE_END = re.compile(r"\n")
_WHITESPACE = re.compile(r"\s")

WindowCounter = Callable[[str], int]


class TokenWindow(Protocol):
    """What the chunker needs of the embedder (``engine.ports.Embedder`` provides both)."""

    max_tokens: int

    def token_count(self, text: str) -> int: ...


class ChunkDraft(msgspec.Struct, frozen=True):
    """One chunk before embedding; ``ordinal`` is its 0-based position in the file.

    ``text`` is the original text (``document_text(doc)[char_start:char_end]``); ``embed_text`` is what
    the embedder and the BM25 encoder see: the prefix and the normalised text (see the module docstring).
    """

    text: str
    embed_text: str
    page: int | None
    heading_path: tuple[str, ...]
    char_start: int
    char_end: int
    ordinal: int


def _safe(text: str) -> str:
    # Lone surrogates cannot be tokenised; "replace" swaps each for "?" so offsets keep their meaning.
    return text.encode("utf-8", "replace").decode("utf-8")


def document_text(doc: ParsedDocument) -> str:
    """The text that ``ChunkDraft.char_start``/``char_end`` index into."""
    return SECTION_SEPARATOR.join(_safe(section.text) for section in doc.sections)


def embed_prefix(title: str | None, heading_path: tuple[str, ...], max_tokens: int = PREFIX_TOKENS) -> str:
    """``"title — Heading > Sub"`` cut to ``max_tokens`` cl100k tokens (empty when there is neither)."""
    title = " ".join((title or "")[:_PREFIX_SOURCE_CHARS].split())
    headings = [" ".join(h[:_PREFIX_SOURCE_CHARS].split()) for h in heading_path]
    if headings and headings[0] == title:
        headings = headings[1:]  # a Markdown H1 is usually the title itself: say it once
    parts = [p for p in (title, " > ".join(headings)) if p]
    prefix = " — ".join(parts)
    if not prefix:
        return ""
    enc = encoding()
    tokens = enc.encode(prefix, disallowed_special=())
    if len(tokens) <= max_tokens:
        return prefix
    # decode a token prefix; a split multi-byte character decodes to U+FFFD, which we drop
    return enc.decode(tokens[: max_tokens - 1]).replace("\ufffd", "").rstrip() + "…"


class _SectionChunker:
    """Splits one section's text; token ``i`` starts at character ``starts[i]``."""

    def __init__(self, text: str, chunk_tokens: int, overlap: int) -> None:
        self.text = text
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        starts: list[int] = []
        for lo, hi in _pieces(text):
            tokens = encoding().encode(text[lo:hi], disallowed_special=())
            decoded, offsets = _decode_with_offsets(tokens)
            if decoded != text[lo:hi]:  # cannot happen for surrogate-free str; keep offsets honest if it ever does
                raise InvalidInput("the file's text could not be tokenised")
            starts.extend(offsets if lo == 0 else (lo + offset for offset in offsets))
        self.n = len(starts)
        self.starts = [*starts, len(text)]  # starts[n] is the end sentinel

    def char(self, token: int) -> int:
        return self.starts[min(token, self.n)]

    def token_at_or_after(self, char: int) -> int:
        return bisect.bisect_left(self.starts, char, hi=self.n)

    def end_token(self, start: int, budget: int) -> int:
        """End (exclusive) of a chunk from ``start`` of at most ``budget`` tokens, at the nicest boundary."""
        hard = start + budget
        if hard >= self.n:
            return self.n
        lo, hi = self.char(start + max(budget // 2, 1)), self.char(hard)
        window = self.text[lo:hi]
        for pattern in (_PARAGRAPH, _SENTENCE_END, _LINE_END, _WHITESPACE):
            last = None
            for last in pattern.finditer(window):  # noqa: B007 - we want the last match
                pass
            if last is not None:
                end = self.token_at_or_after(lo + last.end())
                if start < end <= hard and self.char(end) > self.char(start):
                    return end
        return self._nonempty_end(start, hard)

    def _nonempty_end(self, start: int, end: int) -> int:
        # Several tokens can share one start character (a split multi-byte char): never return an empty span.
        while end < self.n and self.char(end) <= self.char(start):
            end += 1
        return end

    def next_start(self, start: int, end: int) -> int:
        """Where the next chunk begins: ``overlap`` tokens back, moved forward to a sentence or word start."""
        # a chunk cut short (boundary, or the embedder window) overlaps at most half of itself: steady progress
        overlap = min(self.overlap, (end - start) // 2)
        first = max(end - overlap, start + 1)
        if first >= end:
            return end
        lo, hi = self.char(first), self.char(end)
        window = self.text[lo:hi]
        for pattern in (_SENTENCE_END, _LINE_END, _WHITESPACE):
            match = pattern.search(window)
            if match is not None:
                candidate = self.token_at_or_after(lo + match.end())
                if first <= candidate < end:
                    return candidate
        return first

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Character span of tokens ``[start, end)`` without surrounding whitespace."""
        lo, hi = self.char(start), self.char(end)
        while lo < hi and self.text[lo].isspace():
            lo += 1
        while hi > lo and self.text[hi - 1].isspace():
            hi -= 1
        return lo, hi


def _decode_with_offsets(tokens: list[int]) -> tuple[str, list[int]]:
    """``tiktoken.Encoding.decode_with_offsets``, without its per-byte Python loop for ASCII tokens (most of them):
    that loop was 40 % of parsing and chunking a SciFact abstract. A token that starts inside a multi-byte
    character is given that character's start, as tiktoken does."""
    token_bytes = encoding().decode_tokens_bytes(tokens)
    offsets: list[int] = []
    chars = 0
    for piece in token_bytes:
        if piece.isascii():
            offsets.append(chars)
            chars += len(piece)
        else:
            offsets.append(max(0, chars - (0x80 <= piece[0] < 0xC0)))
            chars += sum(1 for byte in piece if not 0x80 <= byte < 0xC0)
    return b"".join(token_bytes).decode("utf-8", errors="strict"), offsets


def _pieces(text: str) -> list[tuple[int, int]]:
    """Spans to encode separately: the whole text, unless a non-space run exceeds ``_MAX_RUN_CHARS``."""
    if len(text) <= _MAX_RUN_CHARS or max(map(len, text.split()), default=0) <= _MAX_RUN_CHARS:
        return [(0, len(text))]
    cuts = [0]
    for run in _NON_SPACE_RUN.finditer(text):
        if run.end() - run.start() > _MAX_RUN_CHARS:
            cuts.extend(range(run.start() + _MAX_RUN_CHARS, run.end(), _MAX_RUN_CHARS))
    cuts.append(len(text))
    return list(itertools.pairwise(cuts))


def _validate(chunk_tokens: int, overlap: int, max_chunks: int) -> None:
    if chunk_tokens < 16:
        raise ValueError("chunk_tokens must be at least 16")
    if not 0 <= overlap < chunk_tokens // 2:
        raise ValueError("overlap must be >= 0 and less than half of chunk_tokens")
    if max_chunks < 1:
        raise ValueError("max_chunks must be positive")


def chunk_document(
    doc: ParsedDocument,
    *,
    chunk_tokens: int = 200,
    overlap: int = 40,
    max_chunks: int = 20_000,
    title: str | None = None,
    window: TokenWindow,
) -> list[ChunkDraft]:
    """Split ``doc`` into overlapping token chunks with an embedding text that fits the model window.

    Args:
        doc: parser output.
        chunk_tokens: target chunk size in cl100k tokens (a chunk may be shorter to end at a boundary
            or to fit the embedder's window).
        overlap: cl100k tokens repeated from the end of the previous chunk of the same section.
        max_chunks: refuse files producing more chunks than this.
        title: prefix for ``embed_text`` (e.g. the file name); defaults to the document's own title.
        window: the embedder: its input window (``max_tokens``) and its own token counter.

    Raises:
        InvalidInput: the document produces more than ``max_chunks`` chunks.
    """
    _validate(chunk_tokens, overlap, max_chunks)
    count = window.token_count
    limit = window.max_tokens - _SPECIAL_TOKENS
    drafts: list[ChunkDraft] = []
    base = 0
    for section in doc.sections:
        text = _safe(section.text)
        prefix = embed_prefix(title or doc.title, section.heading_path)
        chunker = _SectionChunker(text, chunk_tokens, overlap)
        for lo, hi, indexed in _section_spans(chunker, prefix, count, limit, pdf=doc.file_type == "pdf"):
            if len(drafts) >= max_chunks:
                raise InvalidInput(f"file produces more than {max_chunks} chunks")
            drafts.append(
                ChunkDraft(
                    text=text[lo:hi], embed_text=f"{prefix}\n{indexed}" if prefix else indexed, page=section.page,
                    heading_path=section.heading_path, char_start=base + lo, char_end=base + hi,
                    ordinal=len(drafts),
                )
            )
        base += len(text) + len(SECTION_SEPARATOR)
    return drafts


def _section_spans(
    chunker: _SectionChunker, prefix: str, count: WindowCounter, limit: int, *, pdf: bool
) -> list[tuple[int, int, str]]:
    """``(lo, hi, index text)`` of the section's chunks that have words, in order."""
    spans: list[tuple[int, int, str]] = []
    prefix_cost = count(prefix + "\n") if prefix else 0
    start = 0
    while start < chunker.n:
        end, indexed = _fitting_end(chunker, start, prefix_cost, count, limit, pdf=pdf)
        lo, hi = chunker.span(start, end)
        if indexed:
            spans.append((lo, hi, indexed))
        if end >= chunker.n:
            break
        start = chunker.next_start(start, end)
    return spans


def _fitting_end(
    chunker: _SectionChunker, start: int, prefix_cost: int, count: WindowCounter, limit: int, *, pdf: bool
) -> tuple[int, str]:
    """Chunk end whose index text, after the prefix, fits ``limit`` window tokens, and that text ("" for a
    chunk without words, which is dropped: nothing to fit). Shrinks the budget until it fits."""
    budget = chunker.chunk_tokens
    while True:
        end = chunker.end_token(start, budget)
        lo, hi = chunker.span(start, end)
        body = chunker.text[lo:hi]
        if not has_words(body):
            return end, ""
        indexed = index_text(body, pdf=pdf)
        used = prefix_cost + count(indexed)
        if used <= limit or end - start <= 1:
            return end, indexed
        # shrink in proportion to the overflow, a little extra so this rarely loops more than twice
        room = max(limit - prefix_cost, 1)
        budget = max(1, min(end - start - 1, int((end - start) * room / used * 0.95)))

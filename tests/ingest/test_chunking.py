"""Chunker: sizes, overlap, page and heading boundaries, offsets, limits, and the embedder's window."""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable

import pytest

from engine.errors import InvalidInput
from engine.tokens import count_tokens
from ingest import chunking
from ingest.chunking import PREFIX_TOKENS, ChunkDraft, chunk_document, document_text, embed_prefix
from ingest.loaders import parse_document
from ingest.parsed import ParsedDocument, Section
from tests.helpers.pdfs import page_marker, reportlab_pdf

PROSE = (
    "Retrieval systems split documents into chunks. Each chunk is embedded and stored with its page number. "
    "A query is embedded the same way, and the nearest chunks come back with citations! Does that work well? "
    "It does when chunks end at sentence boundaries and carry their headings. "
)


@pytest.fixture
def chunk(embedder):
    """``chunk_document`` with the session's embedder as the window."""
    return functools.partial(chunk_document, window=embedder)


def doc_of(*sections: Section, title: str | None = None) -> ParsedDocument:
    return ParsedDocument(file_type="txt", sections=sections, pages_total=0, title=title)


def assert_offsets(doc: ParsedDocument, chunks: list[ChunkDraft]) -> None:
    full = document_text(doc)
    for chunk in chunks:
        assert full[chunk.char_start : chunk.char_end] == chunk.text


def test_chunk_sizes_and_sentence_boundaries(chunk) -> None:
    doc = doc_of(Section(PROSE * 40))
    chunks = chunk(doc, chunk_tokens=120, overlap=20)
    assert len(chunks) > 5
    sizes = [count_tokens(c.text) for c in chunks]
    assert max(sizes) <= 120
    assert min(sizes[:-1]) >= 60  # a boundary is only searched for in the second half of the budget
    assert all(c.text.endswith((".", "!", "?")) for c in chunks)  # prose always offers a sentence end
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert_offsets(doc, chunks)


def test_overlap_repeats_the_tail_of_the_previous_chunk(chunk) -> None:
    doc = doc_of(Section(PROSE * 30))
    chunks = chunk(doc, chunk_tokens=100, overlap=30)
    for previous, current in itertools.pairwise(chunks):
        assert current.char_start < previous.char_end  # overlapping
        shared = doc.sections[0].text[current.char_start : previous.char_end]
        assert 0 < count_tokens(shared) <= 30
        assert current.char_start > previous.char_start  # progress
    no_overlap = chunk(doc, chunk_tokens=100, overlap=0)
    for previous, current in itertools.pairwise(no_overlap):
        assert current.char_start >= previous.char_end
    assert_offsets(doc, no_overlap)


def test_paragraph_breaks_are_preferred(chunk) -> None:
    paragraphs = [f"Paragraph {i} starts here. " + "Some filler words follow. " * 6 for i in range(30)]
    doc = doc_of(Section("\n\n".join(paragraphs)))
    chunks = chunk(doc, chunk_tokens=150, overlap=0)
    assert all(c.text.startswith("Paragraph ") for c in chunks)
    assert all(c.text.endswith("follow.") for c in chunks)


def test_chunks_never_cross_pages(chunk) -> None:
    doc = parse_document(reportlab_pdf(5, lines_per_page=30), "pdf")
    chunks = chunk(doc, title="handbook.pdf")
    assert {c.page for c in chunks} == {1, 2, 3, 4, 5}
    for chunk in chunks:
        others = [page_marker(p) for p in range(1, 6) if p != chunk.page]
        assert not any(marker in chunk.text for marker in others)
    for page in range(1, 6):
        first = next(c for c in chunks if c.page == page)
        assert first.text.startswith(page_marker(page))
        assert first.embed_text.startswith("handbook.pdf\n")
    assert_offsets(doc, chunks)


def test_heading_paths_are_kept_and_prefixed(chunk) -> None:
    source = b"# Guide\nIntro.\n\n## Install\n" + PROSE.encode() * 8 + b"\n\n### Linux\nUse apt to install it.\n"
    doc = parse_document(source, "md")
    chunks = chunk(doc, chunk_tokens=80, overlap=10, title="readme.md")
    paths = [c.heading_path for c in chunks]
    assert paths[0] == ("Guide",) and paths[-1] == ("Guide", "Install", "Linux")
    assert ("Guide", "Install") in paths
    linux = chunks[-1]
    assert linux.text == "Use apt to install it."
    assert linux.embed_text == "readme.md — Guide > Install > Linux\nUse apt to install it."
    assert_offsets(doc, chunks)


def test_document_title_is_the_default_prefix_and_prefix_is_bounded(chunk) -> None:
    doc = doc_of(Section("Short text."), title="Annual report")
    assert chunk(doc)[0].embed_text == "Annual report\nShort text."
    long_title = "An extremely long and verbose title that keeps going " * 10
    prefix = embed_prefix(long_title, ("Chapter one", "Section two"))
    assert count_tokens(prefix) <= PREFIX_TOKENS + 1 and prefix.endswith("…")
    assert embed_prefix(None, ()) == ""
    assert embed_prefix("Install guide", ("Install guide", "Linux")) == "Install guide — Linux"  # H1 == title once
    assert embed_prefix("handbook", ("Vacation",)) == "handbook — Vacation"


def test_offsets_index_the_concatenated_document_text(chunk) -> None:
    doc = doc_of(Section("Alpha page text.", page=1), Section("Beta page text.", page=2), Section("Gamma.", page=3))
    chunks = chunk(doc)
    assert document_text(doc) == "Alpha page text.\n\nBeta page text.\n\nGamma."
    assert [(c.char_start, c.char_end, c.page) for c in chunks] == [(0, 16, 1), (18, 33, 2), (35, 41, 3)]
    assert_offsets(doc, chunks)


def test_max_chunks_is_enforced(chunk) -> None:
    doc = doc_of(Section(PROSE * 40))
    with pytest.raises(InvalidInput) as info:
        chunk(doc, chunk_tokens=50, overlap=5, max_chunks=5)
    assert info.value.message == "file produces more than 5 chunks"


def test_invalid_parameters_and_empty_input(chunk) -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk(doc_of(Section("x")), chunk_tokens=100, overlap=60)
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunk(doc_of(Section("x")), chunk_tokens=4, overlap=0)
    assert chunk(doc_of()) == []
    assert chunk(doc_of(Section("   \n\n  "))) == []


def test_unbroken_text_and_split_characters_still_chunk(chunk) -> None:
    # no whitespace; emoji split across cl100k tokens (with a letter each: a chunk of emoji alone has no words)
    blob = "x" * 5000 + "🙂a" * 700 + "東京" * 600
    doc = doc_of(Section(blob))
    chunks = chunk(doc, chunk_tokens=64, overlap=8)
    assert_offsets(doc, chunks)
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(blob)
    covered = 0
    for chunk in chunks:
        assert chunk.char_start <= covered  # no gap
        covered = max(covered, chunk.char_end)


VARIED = {
    "english": PROSE * 6,
    "python": "def chunk(doc: ParsedDocument, *, size: int = 200) -> list[str]:\n    return [s.text[i:i+size] "
    "for s in doc.sections for i in range(0, len(s.text), size)]  # noqa: E501\n" * 12,
    "json": '{"id": 12345, "tags": ["a", "b"], "url": "https://example.com/x?y=1&z=2", "ok": true}\n' * 30,
    # Cyrillic letters are the point here, not look-alike typos
    "russian": "Системы поиска разбивают документы на фрагменты. "
    "Каждый фрагмент сохраняется с номером страницы. " * 30,  # noqa: RUF001
    "german": "Donaudampfschifffahrtsgesellschaftskapitän und Rechtsschutzversicherungsgesellschaften prüfen. " * 30,
    "korean": "검색 증강 생성 시스템은 문서를 여러 조각으로 나눕니다. 각 조각은 임베딩되어 저장됩니다. " * 30,
    "chinese": "检索增强生成系统将文档切分为多个片段\uff0c每个片段都会被编码并存储\u3002" * 40,
    "urls": "https://docs.example.org/v2/api/reference/endpoints?page=3&sort=desc#section-12 " * 40,
    "hex": " ".join(f"{i * 2654435761 % 2**32:08x}" for i in range(600)),
    "arabic": "تقوم أنظمة الاسترجاع بتقسيم المستندات إلى أجزاء. يتم تضمين كل جزء وتخزينه مع رقم الصفحة. " * 30,
    # NFKC expands these in the embedded text: U+FDFD is a 4-word phrase, U+FB03 "ffi", U+337F 4 kanji
    "nfkc-expanding": "\ufdfd \ufdfa o\ufb03ce \u337f \u3392 " * 60,
}


@pytest.mark.parametrize("kind", sorted(VARIED))
def test_embed_text_fits_the_minilm_window(kind: str, embedder, chunk) -> None:
    """Counted by the real model's tokenizer (the session's sentence-transformers model), not our own counter."""
    assert embedder.max_tokens == 256  # all-MiniLM-L6-v2's max_seq_length in word-pieces
    heading = ("Überblick", "Installation unter Linux und macOS")
    doc = doc_of(Section(VARIED[kind], page=1, heading_path=heading))
    chunks = chunk(doc, title="a-rather-long-file-name-for-the-prefix.pdf")
    assert chunks
    for chunk in chunks:
        wordpieces = embedder.token_count(chunk.embed_text) + 2  # [CLS] ... [SEP]
        assert wordpieces <= embedder.max_tokens, (kind, wordpieces)
        assert count_tokens(chunk.text) <= 200
    assert_offsets(doc, chunks)


def test_fifty_page_pdf_chunking_speed(chunk) -> None:
    doc = parse_document(reportlab_pdf(50), "pdf")
    started = time.perf_counter()
    chunks = chunk(doc, title="big.pdf")
    elapsed = time.perf_counter() - started
    assert {c.page for c in chunks} == set(range(1, 51))
    print(f"\n50 pages -> {len(chunks)} chunks in {elapsed:.2f} s")


# --- two texts per chunk, chunks without words, linear time ---------------------------------------------------


def test_embed_text_is_normalised_and_text_is_the_original(chunk) -> None:
    page = (
        "Only quali\ufb01ed sta\ufb00 may \ufb02ag \uff4f\uff46\uff46\uff49\uff43\uff45 \ufb01les.\n"
        "Lorem ipsum dolor sit amet, hen-\ndrerit purus.\n"
        "TThhee  qquuiicckk  bbrroowwnn  ffooxx\n"
        "Safety BulletinSafety Bulletin\nA doubled line.\nA doubled line."
    )
    doc = ParsedDocument(file_type="pdf", sections=(Section(page, page=1),), pages_total=1)
    (only,) = chunk(doc, title="bulletin.pdf")
    assert only.text == page  # shown and quoted as extracted
    assert only.embed_text == (
        "bulletin.pdf\nOnly qualified staff may flag office files. Lorem ipsum dolor sit amet, hendrerit purus. "
        "The quick brown fox Safety Bulletin A doubled line."
    )
    assert_offsets(doc, [only])
    # the repairs are for PDFs: in a text file a doubled line is content; NFKC applies to every type
    text_doc = doc_of(Section("quali\ufb01ed hen-\ndrerit\nsame\nsame"))
    assert chunk(text_doc)[0].embed_text == "qualified hen- drerit same same"


def test_chunks_without_words_are_not_indexed(chunk) -> None:
    doc = doc_of(
        Section("Intro text.", page=1),
        Section("> > >\n>\n> > >", page=2),
        Section("---\n\n***\n\n___", page=3),
        Section("." * 20_000, page=4),
        Section("\u2022 \u2014 \U0001f642\U0001f642 \ue001\ufffd", page=5),  # bullets, emoji, private use
        Section("Outro 42.", page=6),
    )
    chunks = chunk(doc)
    assert [(c.page, c.text, c.ordinal) for c in chunks] == [(1, "Intro text.", 0), (6, "Outro 42.", 1)]
    assert_offsets(doc, chunks)
    # inside a section too: a long run of dashes between two paragraphs leaves just the paragraphs
    rule = "Before the rule. " * 20 + "\n\n" + "-" * 5000 + "\n\n" + "After the rule. " * 20
    split = chunk(doc_of(Section(rule)), chunk_tokens=64, overlap=0)
    assert all(c.text.strip("-\n ") for c in split)
    assert chunk(doc_of(Section("---"), Section(">"))) == []


ALPHABET = "qwertyuiopasdfghjklzxcvbnm"

# name -> (size, document of that size): each is chunked at size and 2 x size
PATHOLOGICAL: dict[str, tuple[int, Callable[[int], ParsedDocument]]] = {
    # one line of up to 2 MB without a space
    "one long line": (1_000_000, lambda n: doc_of(Section((ALPHABET * (n // 26 + 1))[:n]))),
    # up to 200k tiny paragraphs in one section
    "tiny paragraphs": (100_000, lambda n: doc_of(Section("\n\n".join(["ab."] * n)))),
    # up to 1 MB of one punctuation character
    "repeated punctuation": (512_000, lambda n: doc_of(Section("." * n))),
    "quote markers": (256_000, lambda n: doc_of(Section("> " * n))),
    # n sections under one heading of 100 n characters (each section's prefix is built from it)
    "long heading": (
        400,
        lambda n: doc_of(*(Section("text.", heading_path=("H" * (100 * n), f"s{i}")) for i in range(n))),
    ),
}


class CountingWindow:
    """The embedder's window, counting the characters its tokenizer is asked to count."""

    def __init__(self, inner: chunking.TokenWindow) -> None:
        self.inner = inner
        self.max_tokens = inner.max_tokens
        self.chars = 0

    def token_count(self, text: str) -> int:
        self.chars += len(text)
        return self.inner.token_count(text)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_chunking_time_grows_linearly_on_pathological_input(name: str, embedder, monkeypatch) -> None:
    """Doubling the input must not more than double the work: counted characters handed to the tokenizers
    (exact: this is what catches a quadratic path), and the larger input in under 10 s (at most 2 MB: ~1 s
    measured, 40 s before for 1 MB of dots). Timings are printed, not compared: a ratio of two timings flaked
    (0.61 s vs 0.23 s) while other jobs shared the two cores."""
    size, make = PATHOLOGICAL[name]
    encoded = [0]
    real_encoding = chunking.encoding

    class CountingEncoding:
        def __init__(self) -> None:
            self.inner = real_encoding()

        def encode(self, text: str, **kwargs: object) -> list[int]:
            encoded[0] += len(text)
            return self.inner.encode(text, **kwargs)  # type: ignore[arg-type]

        def __getattr__(self, attr: str) -> object:
            return getattr(self.inner, attr)

    counting = CountingEncoding()
    monkeypatch.setattr(chunking, "encoding", lambda: counting)

    def measure(n: int) -> tuple[int, int, float]:
        doc = make(n)
        window = CountingWindow(embedder)
        encoded[0] = 0
        started = time.perf_counter()  # one run: the counters cost next to nothing, and only the bound is checked
        chunk_document(doc, window=window, max_chunks=10**7)
        return window.chars, encoded[0], time.perf_counter() - started

    counted_1, encoded_1, seconds_1 = measure(size)
    counted_2, encoded_2, seconds_2 = measure(2 * size)
    print(f"\n{name}: {seconds_1:.3f} s -> {seconds_2:.3f} s; counted {counted_1} -> {counted_2}, "
          f"encoded {encoded_1} -> {encoded_2} chars")
    assert counted_2 <= 2.2 * counted_1 + 1000
    assert encoded_2 <= 2.2 * encoded_1 + 1000
    assert seconds_2 < 10


def test_token_offsets_match_tiktoken_on_mixed_scripts():
    """The chunker's fast offsets equal tiktoken's own ``decode_with_offsets`` (multi-byte and split characters)."""
    import random

    from engine.tokens import encoding

    rng = random.Random(7)
    ranges = [(32, 126), (0xA0, 0x2FFF), (0x4E00, 0x9FFF), (0x1F300, 0x1F64F)]
    texts = ["naïve café — 東京タワー 🎉", "\U0001d518\U0001d52b z\u0336a\u0336", PROSE]  # fraktur, combining
    texts += ["".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randint(1, 120))) for _ in range(200)]
    for text in texts:
        tokens = encoding().encode(text, disallowed_special=())
        assert chunking._decode_with_offsets(tokens) == encoding().decode_with_offsets(tokens), text

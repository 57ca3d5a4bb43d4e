"""Real PDFs with the text-layer defects of real files, through the real ingest path and search.

Ligatures (U+FB00-U+FB06 as single code points), words hyphenated at line ends, fake bold (every glyph
drawn twice), broken font maps and OCR noise. Search finds the plain spelling; results and citation
quotes keep the text as the page has it; a broken text layer is indexed with a warning.
"""

from __future__ import annotations

import asyncio
import io

import pytest

from api.container import Services, open_services
from engine.agent.citations import SourceRegistry, extract_citations
from engine.errors import InvalidInput
from engine.retrieval import SearchHit, SearchRequest
from engine.settings import Settings
from engine.types import ScoredChunk, SearchFilters, SearchMode
from ingest.chunking import chunk_document
from ingest.loaders import parse_document
from ingest.views import FileInfo
from tests.helpers import postgres
from tests.helpers.pdfs import (
    ALL_LIGATURE_LINES,
    FAKE_BOLD_LINES,
    HANDBOOK_PAGES,
    HYPHENATED_LINES,
    LIGATURE_LINES,
    cmap_pdf,
    fake_bold_pdf,
    lines_pdf,
    make_pdf,
    ocr_noise_lines,
    private_use_text,
)

pytestmark = pytest.mark.slow

FAKE_BOLD_STYLES = ("overprint", "inline", "glyphs")


def page_text(data: bytes, page: int = 1) -> str:
    """The page's text as the PDF loader extracts it (what chunk text is cut from)."""
    doc = parse_document(data, "pdf")
    return next(s.text for s in doc.sections if s.page == page)


class Ingested:
    def __init__(self, services: Services, workspace_id: str, files: dict[str, FileInfo]) -> None:
        self.services = services
        self.workspace_id = workspace_id
        self.files = files

    async def search(self, query: str, mode: SearchMode = "sparse", top_k: int = 5) -> list[SearchHit]:
        filters = SearchFilters(workspace_id=self.workspace_id)
        return await self.services.retriever.retrieve(
            SearchRequest(query=query, filters=filters, mode=mode, top_k=top_k)
        )

    async def top_file(self, query: str, mode: SearchMode = "sparse") -> str | None:
        hits = await self.search(query, mode)
        return hits[0].chunk.file_name if hits else None


async def ingest(tmp_path, embedder, files: dict[str, bytes]) -> Ingested:
    """A fresh app (SQLite or PostgreSQL, embedded Qdrant), the files uploaded and the queue drained."""
    database = {"database_url": postgres.fresh_database()} if postgres.SERVER_URL else {}
    settings = Settings.from_env({}, data_dir=tmp_path / "data", torch_threads=1, **database)
    services = await open_services(settings, embedder=embedder)
    issued = await services.access.bootstrap()
    assert issued is not None
    principal = await services.access.authenticate(issued.secret)
    ws = principal.workspace_id
    kb = await services.knowledge.create_kb(ws, "kb")
    infos = {}
    for name, data in files.items():
        infos[name] = await services.knowledge.add_file(ws, kb.id, filename=name, source=io.BytesIO(data))
    await services.worker.drain(timeout_s=120)
    done = {name: await services.knowledge.get_file(ws, info.id) for name, info in infos.items()}
    return Ingested(services, ws, done)


def run(tmp_path, embedder, files: dict[str, bytes], check) -> None:
    async def scenario() -> None:
        ingested = await ingest(tmp_path, embedder, files)
        try:
            await check(ingested)
        finally:
            await ingested.services.close()

    asyncio.run(scenario())


def test_the_pdfs_carry_the_defects_as_pypdf_extracts_them() -> None:
    """The fixtures are faithful: pypdf gives the code points and line breaks that real PDFs give."""
    assert "quali\ufb01ed" in page_text(lines_pdf([LIGATURE_LINES], font="Vera"))
    every = page_text(cmap_pdf([ALL_LIGATURE_LINES]))
    assert all(chr(code) in every for code in range(0xFB00, 0xFB07))
    assert "hen-\ndrerit" in page_text(lines_pdf([HYPHENATED_LINES]))
    assert "TThhee  qquuiicckk" in page_text(fake_bold_pdf(FAKE_BOLD_LINES, style="glyphs"))
    inline = page_text(fake_bold_pdf(FAKE_BOLD_LINES, style="inline"))
    assert "Quarterly Safety BulletinQuarterly Safety Bulletin" in inline
    assert "Quarterly Safety Bulletin\nQuarterly Safety Bulletin" in page_text(
        fake_bold_pdf(FAKE_BOLD_LINES, style="overprint")
    )
    assert "\uf04c\uf06f\uf072\uf065\uf06d" in page_text(cmap_pdf([[private_use_text("Lorem ipsum")]]))


def test_ligatures_are_found_by_the_plain_spelling_and_shown_as_printed(tmp_path, embedder) -> None:
    vera = lines_pdf([LIGATURE_LINES], font="Vera", title="Review policy")
    every = cmap_pdf([ALL_LIGATURE_LINES])
    files = {"policy.pdf": vera, "ligatures.pdf": every, "handbook.pdf": make_pdf(HANDBOOK_PAGES)}

    async def check(ingested: Ingested) -> None:
        assert {f.status for f in ingested.files.values()} == {"ready"}
        # typed plainly, with the ligature, or in full-width letters: the same BM25 terms
        for query in ("qualified", "quali\ufb01ed", "\uff51\uff55\uff41\uff4c\uff49\uff46\uff49\uff45\uff44"):
            assert await ingested.top_file(query) == "policy.pdf", query
        assert await ingested.top_file("confidential files workflow") == "policy.pdf"
        with pytest.raises(InvalidInput, match="query must not be empty"):
            await ingested.search("\u200b\u00ad ")  # nothing left once normalised
        assert await ingested.top_file("qualified staff flag confidential files", mode="hybrid") == "policy.pdf"
        for word in ("staff office", "efficient", "baffles", "affidavit", "castle", "style"):
            assert await ingested.top_file(word) == "ligatures.pdf", word
        # what search shows is the page's text as printed, ligatures and all
        (hit,) = [h for h in await ingested.search("qualified") if h.chunk.file_name == "policy.pdf"]
        assert "quali\ufb01ed" in hit.chunk.text and "qualified" not in hit.chunk.text
        assert hit.chunk.text in page_text(vera)
        # and a citation quotes it verbatim
        registry = SourceRegistry()
        number = registry.number(ScoredChunk(chunk=hit.chunk, score=hit.score))
        answer = f'The policy says "Only quali\ufb01ed staff members may \ufb02ag" files [{number}].'
        (citation,) = extract_citations(answer, registry)
        assert citation.quote in hit.chunk.text and citation.quote in page_text(vera)

    run(tmp_path, embedder, files, check)


def test_words_hyphenated_at_line_ends_are_found_whole(tmp_path, embedder) -> None:
    data = lines_pdf([HYPHENATED_LINES])
    files = {"lorem.pdf": data, "handbook.pdf": make_pdf(HANDBOOK_PAGES)}

    async def check(ingested: Ingested) -> None:
        for query in ("hendrerit", "pellentesque", "vestibulum hendrerit purus"):
            assert await ingested.top_file(query) == "lorem.pdf", query
        (hit,) = await ingested.search("hendrerit")
        assert "hen-\ndrerit" in hit.chunk.text and hit.chunk.text in page_text(data)

    run(tmp_path, embedder, files, check)


@pytest.mark.parametrize("style", FAKE_BOLD_STYLES)
def test_fake_bold_is_indexed_once(style: str, embedder) -> None:
    """The indexed form of a fake-bold page is exactly that of the same page set normally."""
    plain = parse_document(lines_pdf([FAKE_BOLD_LINES]), "pdf")
    bold = parse_document(fake_bold_pdf(FAKE_BOLD_LINES, style=style), "pdf")
    (plain_chunk,) = chunk_document(plain, window=embedder, title="bulletin")
    (bold_chunk,) = chunk_document(bold, window=embedder, title="bulletin")
    assert bold_chunk.embed_text == plain_chunk.embed_text
    assert bold_chunk.embed_text.count("Forklift operators") == 1
    assert bold_chunk.text == bold.sections[0].text  # shown as extracted


def test_fake_bold_pdfs_are_found_and_shown_as_extracted(tmp_path, embedder) -> None:
    files = {f"{style}.pdf": fake_bold_pdf(FAKE_BOLD_LINES, style=style) for style in FAKE_BOLD_STYLES}
    files["handbook.pdf"] = make_pdf(HANDBOOK_PAGES)

    async def check(ingested: Ingested) -> None:
        hits = await ingested.search("quick brown fox forklift reflective vests", top_k=10)
        assert {h.chunk.file_name for h in hits[:3]} == {f"{style}.pdf" for style in FAKE_BOLD_STYLES}
        # doubling no longer inflates BM25 term frequencies: the three score alike
        scores = [h.score for h in hits[:3]]
        assert max(scores) - min(scores) < 1e-3 * max(scores)
        glyphs = next(h for h in hits if h.chunk.file_name == "glyphs.pdf")
        assert "TThhee  qquuiicckk" in glyphs.chunk.text

    run(tmp_path, embedder, files, check)


def test_broken_text_layers_are_ready_with_a_warning(tmp_path, embedder) -> None:
    broken_page = [private_use_text(line) for line in HYPHENATED_LINES * 4]
    files = {
        "fonts.pdf": cmap_pdf([HYPHENATED_LINES, broken_page]),  # page 2's font map gives private-use code points
        "scan.pdf": lines_pdf([ocr_noise_lines(45)]),  # an OCR layer of noise
        "mixed.pdf": cmap_pdf([ALL_LIGATURE_LINES * 6] * 4 + [broken_page] + [ALL_LIGATURE_LINES * 6] * 4),
        "clean.pdf": make_pdf(HANDBOOK_PAGES),
    }

    async def check(ingested: Ingested) -> None:
        info = ingested.files
        assert {f.status for f in info.values()} == {"ready"}, {n: f.error for n, f in info.items()}
        (fonts,) = info["fonts.pdf"].warnings
        assert fonts.startswith("text layer looks broken: ")
        assert fonts.endswith("% of characters are (cid:…) placeholders, private-use or replacement characters")
        (scan,) = info["scan.pdf"].warnings
        assert scan.startswith("text looks like noise: only ")
        assert info["mixed.pdf"].warnings == [
            "text layer looks broken on page(s) 5: mostly (cid:…) placeholders, private-use or replacement characters"
        ]
        assert info["clean.pdf"].warnings == []
        # the readable page is searchable as ever
        assert await ingested.top_file("hendrerit") == "fonts.pdf"

    run(tmp_path, embedder, files, check)


def test_pdfs_without_words_are_not_indexed(tmp_path, embedder) -> None:
    files = {
        "rules.pdf": lines_pdf([["---- ---- ....", ">>>> **** ----", "* * * * *"]]),
        # every letter a private-use code point: nothing search could find; the reason says why
        "symbols.pdf": cmap_pdf([[private_use_text(line) for line in HYPHENATED_LINES]]),
        "ok.pdf": lines_pdf([["Some words.", "---- ---- ----"]]),
    }

    async def check(ingested: Ingested) -> None:
        info = ingested.files
        assert (info["rules.pdf"].status, info["rules.pdf"].error) == ("failed", "the file contains no text")
        symbols = info["symbols.pdf"]
        assert symbols.status == "failed"
        assert symbols.error == (
            "the file contains no text (text layer looks broken: 95 % of characters are (cid:…) placeholders, "
            "private-use or replacement characters)"
        )
        assert (info["ok.pdf"].status, info["ok.pdf"].chunks_total) == ("ready", 1)
        assert await ingested.services.store.count(SearchFilters(workspace_id=ingested.workspace_id)) == 1

    run(tmp_path, embedder, files, check)

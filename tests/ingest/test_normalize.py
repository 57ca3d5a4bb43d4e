"""Text normalised for indexing (ligatures, hyphenation, fake bold) and the broken-text-layer check."""

from __future__ import annotations

import pytest

from engine.retrieval import normalize_text
from ingest.normalize import has_words, index_text, text_warnings
from tests.helpers.pdfs import HANDBOOK_PAGES, LOREM, ocr_noise_lines, private_use_text
from tests.ingest.test_chunking import PROSE, VARIED

LIGATURES = {
    "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st",
}


def pdf_index(text: str) -> str:
    return index_text(text, pdf=True)


@pytest.mark.parametrize(("ligature", "letters"), sorted(LIGATURES.items()))
def test_ligatures_index_as_their_letters(ligature: str, letters: str) -> None:
    assert index_text(f"a{ligature}x") == pdf_index(f"a{ligature}x") == f"a{letters}x"
    assert normalize_text(f"a{ligature}x") == f"a{letters}x"  # the query side


def test_nfkc_full_width_invisibles_and_whitespace() -> None:
    assert normalize_text("\uff51\uff55\uff41\uff4c\uff49\uff46\uff49\uff45\uff44") == "qualified"  # full-width
    spaced = "staff\u00a0member  \t\n zero\u200bwidth soft\u00adhyphen"
    assert normalize_text(spaced) == "staff member zerowidth softhyphen"
    assert normalize_text(" \u200b \ufeff ") == ""


def test_line_end_hyphenation_is_joined_for_a_lower_case_continuation() -> None:
    assert pdf_index("vestibulum hen-\ndrerit purus") == "vestibulum hendrerit purus"
    assert pdf_index("pellen-  \n   tesque") == "pellentesque"
    assert pdf_index("quali-\n\ufb01ed") == "qualified"  # a ligature continues in lower case
    assert pdf_index("hyphen\u00ad\nation") == "hyphenation"  # a soft hyphen always marks a break
    # not a hyphenated word: upper case or a digit continues, a digit precedes, or the hyphen is mid-line
    assert pdf_index("Windows-\nServer") == "Windows- Server"
    assert pdf_index("2019-\n2020") == "2019- 2020"
    assert pdf_index("pages 3-\nnext") == "pages 3- next"
    assert pdf_index("a well-known fact") == "a well-known fact"


def test_fake_bold_doubled_glyphs_are_undone() -> None:
    assert pdf_index("TThhee  qquuiicckk  bbrroowwnn  ffooxx..") == "The quick brown fox."
    assert pdf_index("intro\nSSuummmmaarryy\nbody text") == "intro Summary body text"
    assert pdf_index("TThhee  ccaatt  aanndd  aa  ddoogg") == "The cat and a dog"  # "aa" is a doubled "a" here
    # real words with double letters, and doubled tokens that are not text, are left alone
    kept = "bookkeeper committee Mississippi AAAA aa ee 1100 2200 ---- ...."
    assert pdf_index(kept) == kept


def test_fake_bold_repeated_lines_are_indexed_once() -> None:
    assert pdf_index("Quarterly Safety BulletinQuarterly Safety Bulletin\nnext") == "Quarterly Safety Bulletin next"
    assert pdf_index("Summary Summary") == "Summary"
    assert pdf_index("A line of text.\nA line of text.\nAnother line.") == "A line of text. Another line."
    # short reduplications are words, and a line repeated after another line is content
    assert pdf_index("bonbon couscous ha ha") == "bonbon couscous ha ha"
    assert pdf_index("Yes\nNo\nYes") == "Yes No Yes"


def test_index_text_is_idempotent_and_leaves_plain_text_alone() -> None:
    for text in (PROSE, *VARIED.values(), *HANDBOOK_PAGES):
        assert index_text(text) == normalize_text(text)  # not a PDF: only normalize_text
    assert index_text(PROSE) == " ".join(PROSE.split())
    for text in (*HANDBOOK_PAGES, "\n".join(HANDBOOK_PAGES), "\n".join(LOREM.split(". ")), "东京。\n大阪\uff0c京都"):
        once = pdf_index(text)
        assert once == normalize_text(text)  # PDF repairs leave ordinary text alone
        assert pdf_index(once) == once


def test_pdf_repairs_are_for_pdfs_only() -> None:
    rows = "id,name\n1,alpha\n1,alpha\n"  # repeated rows, "double" text: content in a CSV or a log
    assert index_text(rows) == "id,name 1,alpha 1,alpha"
    assert index_text("TThhee  qquuiicckk hen-\ndrerit") == "TThhee qquuiicckk hen- drerit"


def test_has_words() -> None:
    assert has_words("a") and has_words("42") and has_words("東京") and has_words("(cid:12)")
    assert not has_words("> > >\n---\n...\n___\n\u2022 \ue001\ufffd")


# --- broken text layers ------------------------------------------------------------------------


def pages(*texts: str) -> list[tuple[int | None, str]]:
    return [(n, text) for n, text in enumerate(texts, start=1)]


def test_clean_text_of_many_kinds_has_no_warning() -> None:
    texts = [PROSE * 5, LOREM * 5, *HANDBOOK_PAGES, *VARIED.values()]
    assert text_warnings(pages(*texts)) == ()
    for text in texts:
        assert text_warnings(pages(text)) == (), text[:40]


def test_cid_placeholders_are_a_broken_text_layer() -> None:
    broken = " ".join(f"(cid:{n % 90 + 3})" for n in range(400))
    (warning,) = text_warnings(pages(PROSE, broken))
    assert warning.startswith("text layer looks broken: ")
    assert "% of characters are (cid:…) placeholders, private-use or replacement characters" in warning


def test_private_use_and_replacement_characters_are_a_broken_text_layer() -> None:
    (warning,) = text_warnings(pages(private_use_text(PROSE * 3)))
    assert warning.startswith("text layer looks broken: 9")  # 9x % of the visible characters
    (warning,) = text_warnings(pages("\ufffd" * 300 + " " + PROSE))
    assert warning.startswith("text layer looks broken: ")


def test_one_broken_page_among_good_ones_is_named() -> None:
    good = [PROSE * 4] * 9
    (warning,) = text_warnings(pages(*good[:4], private_use_text(PROSE), *good[4:]))
    assert warning == (
        "text layer looks broken on page(s) 5: mostly (cid:…) placeholders, private-use or replacement characters"
    )
    assert text_warnings(pages(PROSE + " \ue001 \uf0b7 bullets")) == ()  # a few private-use symbols are normal


def test_ocr_noise_is_flagged() -> None:
    noise = "\n".join(ocr_noise_lines(40))
    (warning,) = text_warnings(pages(noise))
    assert warning.startswith("text looks like noise: only ")
    assert warning.endswith("% of its words look like words (a garbled or poor OCR layer?)")
    (per_page,) = text_warnings(pages(*[PROSE * 3] * 6, noise))
    assert per_page == "text looks like noise on page(s) 7: few word-like tokens"


def test_warnings_need_enough_text_to_judge() -> None:
    assert text_warnings(pages("zx qw")) == ()
    assert text_warnings(pages("\ue001")) == ()
    assert text_warnings([]) == ()

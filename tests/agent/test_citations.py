"""Citation rule: only chunks retrieved in this run, and only when the chunk contains the quote."""

from __future__ import annotations

from engine.agent.citations import SourceRegistry, choose_quote, extract_citations
from tests.agent.helpers import chunk

TEXT_A = "The warranty lasts two years. Batteries are covered for one year only. Water damage is excluded."
TEXT_B = "Support is available by email. Phone support runs on weekdays from 9 to 5."


def registry() -> SourceRegistry:
    reg = SourceRegistry()
    assert reg.number(chunk(TEXT_A, n=1)) == 1
    assert reg.number(chunk(TEXT_B, n=2)) == 2
    assert reg.number(chunk(TEXT_A, n=1)) == 1  # the same chunk keeps its number
    return reg


def test_quote_is_the_best_matching_sentence_of_the_chunk() -> None:
    cites = extract_citations(
        "Batteries are only covered for a year [1]. Phone support works on weekdays [2].", registry()
    )
    assert [(c.index, c.hit.chunk.id, c.quote) for c in cites] == [
        (1, "chunk-guide.md-1", "Batteries are covered for one year only."),
        (2, "chunk-guide.md-2", "Phone support runs on weekdays from 9 to 5."),
    ]
    for c in cites:
        assert c.quote in c.hit.chunk.text


def test_unretrieved_numbers_and_unsupported_claims_get_no_citation() -> None:
    answer = "The moon is made of cheese [1]. Rockets are fast [3]. Water damage is excluded [1]."
    cites = extract_citations(answer, registry())
    # [3] was never retrieved; the cheese claim shares no keyword with chunk 1; the later claim does.
    assert [(c.index, c.quote) for c in cites] == [(1, "Water damage is excluded.")]


def test_marker_after_the_sentence_and_verbatim_quotes() -> None:
    answer = 'The guide says "Support is available by email". [2] Also, warranty: two years.\n\n[1]'
    cites = extract_citations(answer, registry())
    assert [(c.index, c.quote) for c in cites] == [
        (2, "Support is available by email"),
        (1, "The warranty lasts two years."),
    ]


def test_choose_quote_without_overlap_is_none() -> None:
    assert choose_quote("Completely unrelated words", TEXT_A) is None


def test_a_claim_typed_plainly_matches_a_sentence_with_ligatures() -> None:
    """PDF text keeps its ligature code points (U+FB01); the quote is the original sentence."""
    from engine.agent.citations import choose_quote

    chunk_text = "Only quali\ufb01ed staff may open con\ufb01dential \ufb01les. The canteen opens at noon."
    assert choose_quote("Qualified staff open confidential files", chunk_text) == (
        "Only quali\ufb01ed staff may open con\ufb01dential \ufb01les."
    )

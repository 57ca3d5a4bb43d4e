"""Citations: ``[n]`` markers in the answer, checked against what this run actually retrieved.

Numbering: every chunk a tool returned as a source gets one run-wide number (the same chunk
retrieved twice keeps its number), and the loop shows passages to the model under those numbers.

Quote rule, per marker ``[n]`` (in order of first appearance, once per number):
1. ``n`` must name a chunk retrieved in this run; otherwise no citation (an invented source).
2. The claim is the answer sentence that carries the marker (a marker standing alone after a
   sentence belongs to that sentence).
3. If the claim contains a double-quoted span that occurs verbatim in the chunk, that span is
   the quote. Otherwise the quote is the chunk sentence sharing the most keywords with the claim
   (ties: the earlier sentence); with no shared keyword there is no citation.
4. A citation is emitted only if the chunk text contains the quote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.agent.textmatch import keywords, overlap, sentences
from engine.types import ScoredChunk

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_QUOTED = re.compile(r"[\"“]([^\"”]{8,})[\"”]")


@dataclass
class SourceRegistry:
    """Run-wide numbers for retrieved chunks."""

    by_number: dict[int, ScoredChunk] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)

    def number(self, hit: ScoredChunk) -> int:
        known = self.numbers.get(hit.chunk.id)
        if known is not None:
            return known
        n = len(self.by_number) + 1
        self.by_number[n] = hit
        self.numbers[hit.chunk.id] = n
        return n


@dataclass(frozen=True)
class Citation:
    index: int
    hit: ScoredChunk
    quote: str


def _claims(answer: str) -> list[tuple[str, list[int]]]:
    """(claim sentence, marker numbers) for every answer sentence that carries markers."""
    out: list[tuple[str, list[int]]] = []
    previous = ""
    for sentence in sentences(answer):  # "Claim. [1] Next." splits after the marker
        numbers = [int(n) for group in _MARKER.findall(sentence) for n in group.split(",")]
        claim = sentence if keywords(sentence) else previous
        if numbers:
            out.append((claim, numbers))
        if keywords(sentence):
            previous = sentence
    return out


def choose_quote(claim: str, chunk_text: str) -> str | None:
    """The quote for one claim from one chunk, by the module's rule (``None``: not supported)."""
    for match in _QUOTED.finditer(claim):
        quoted = match.group(1).strip()
        if quoted and quoted in chunk_text:
            return quoted
    claim_words = keywords(claim)
    best, best_score = None, 0.0
    for sentence in sentences(chunk_text):
        score = overlap(claim_words, sentence)
        if score > best_score:
            best, best_score = sentence, score
    return best


def extract_citations(answer: str, registry: SourceRegistry) -> list[Citation]:
    """Citations for the ``[n]`` markers of ``answer`` that pass the module's rule."""
    seen: set[int] = set()
    citations: list[Citation] = []
    for claim, numbers in _claims(answer):
        for n in numbers:
            hit = registry.by_number.get(n)
            if n in seen or hit is None:
                continue
            quote = choose_quote(claim, hit.chunk.text)
            if quote and quote in hit.chunk.text:
                seen.add(n)
                citations.append(Citation(index=n, hit=hit, quote=quote))
    return citations

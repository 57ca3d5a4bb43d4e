"""Sentence splitting and keyword overlap, shared by citation quoting and the extractive model."""

from __future__ import annotations

import re
import unicodedata

# A sentence ends at ". " before a capital, or after a citation marker that follows one ("... x. [1] Next").
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z0-9])|(?<=\])\s+(?=[\"'(]?[A-Z])|\n{2,}|\n(?=\s*[-*•]\s)")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_MARKER = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_STOPWORD_TEXT = """a an and are as at be by can do does for from has have how i in is it its of on or that the
this to was were what when where which who why will with you your about into than then there these those"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def sentences(text: str) -> list[str]:
    """Split text into sentences (good enough for prose and bullet lists)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def keywords(text: str) -> set[str]:
    """Lower-cased content words (no stop words, no citation markers, length > 1), in NFKC form: a ligature
    (U+FB01) in a PDF's text matches "fi" typed in a question, as in search."""
    text = _MARKER.sub(" ", unicodedata.normalize("NFKC", text))
    return {w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if len(w) > 1 and w not in STOPWORDS}


def overlap(query: set[str], text: str) -> float:
    """Share of the query's keywords found in ``text`` (0..1)."""
    if not query:
        return 0.0
    return len(query & keywords(text)) / len(query)

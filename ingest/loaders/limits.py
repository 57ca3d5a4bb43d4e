"""Bounds shared by the loaders: a parser never returns more text than the chunker could index."""

from __future__ import annotations

from engine.errors import InvalidInput

# ~20k chunks x 200 tokens x ~4 chars/token is ~16 M chars; allow headroom, refuse beyond.
MAX_TEXT_CHARS = 40_000_000
MAX_CSV_ROWS = 200_000
MAX_JSON_DEPTH = 200


class TextBudget:
    """Counts characters emitted by a parser and refuses once ``MAX_TEXT_CHARS`` is passed."""

    def __init__(self, limit: int = MAX_TEXT_CHARS) -> None:
        self.limit = limit
        self.used = 0

    def take(self, text: str) -> str:
        self.used += len(text)
        if self.used > self.limit:
            raise InvalidInput(f"the file contains more than {self.limit:,} characters of text")
        return text

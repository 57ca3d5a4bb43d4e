"""Markdown: one section per heading, carrying its heading path (``("Install", "Linux")``).

Block quotes keep their words without their markers: ``> > Nested reply`` is indexed as ``Nested
reply`` (outside fenced code, which is kept verbatim, ``>>>`` prompts included). A quoted line never
becomes a heading. Every step is linear in the line length: no regex here can backtrack
quadratically (the closing ``#`` sequence of an ATX heading and the whitespace of heading names are
handled with ``str`` methods), so hostile input such as thousands of nested ``>`` on every line of a
2 MB file, or a heading with a megabyte of spaces, parses in well under a second.
"""

from __future__ import annotations

import re

from engine.errors import InvalidInput
from ingest.loaders.limits import TextBudget
from ingest.loaders.text import decode_text
from ingest.parsed import ParsedDocument, Section

# The opening of an ATX heading: up to 3 spaces, 1-6 '#', then a space, a tab or the end of the line.
_ATX_OPEN = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_SETEXT = re.compile(r" {0,3}(?:=+|-+)[ \t]*$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
# Block-quote markers: up to 3 spaces and '>', then any further '>' (nested levels, spaces between),
# then the one optional space that belongs to the marker. Linear: a failed further level backtracks
# over one run of blanks once.
_QUOTE = re.compile(r" {0,3}>(?:[ \t]*>)*[ \t]?")
_INLINE_MARKUP = re.compile(r"[*_`]+")
MAX_HEADING_CHARS = 200


def _clean_heading(raw: str) -> str:
    return " ".join(_INLINE_MARKUP.sub("", raw).split())[:MAX_HEADING_CHARS]


def _atx(line: str) -> tuple[int, str] | None:
    """``(level, raw name)`` of an ATX heading line, without its optional closing ``#`` sequence."""
    match = _ATX_OPEN.match(line)
    if match is None:
        return None
    name = line[match.end() :].strip(" \t")
    unclosed = name.rstrip("#")
    if unclosed != name and (not unclosed or unclosed[-1] in " \t"):
        name = unclosed.rstrip(" \t")
    return len(match.group(1)), name


class _Builder:
    """Accumulates lines under the current heading path and closes a section at each heading."""

    def __init__(self, budget: TextBudget) -> None:
        self.budget = budget
        self.stack: list[tuple[int, str]] = []
        self.lines: list[str] = []
        self.sections: list[Section] = []
        self.title: str | None = None

    def flush(self) -> None:
        body = "\n".join(self.lines).strip()
        self.lines = []
        if body:
            path = tuple(name for _, name in self.stack)
            self.sections.append(Section(text=self.budget.take(body), heading_path=path))

    def heading(self, level: int, name: str) -> None:
        self.flush()
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        if name:
            self.stack.append((level, name))
        if level == 1 and self.title is None and name:
            self.title = name


def _setext_level(line: str, previous: str) -> int:
    match = _SETEXT.match(line)
    if match is None or not previous.strip() or _atx(previous) is not None:
        return 0
    return 1 if line.lstrip(" ").startswith("=") else 2


def parse_markdown(data: bytes) -> ParsedDocument:
    builder = _Builder(TextBudget())
    fence: str | None = None
    after_text = False  # the previous line was paragraph text (only that can be a setext heading's name)
    for line in decode_text(data).split("\n"):
        fence_match = _FENCE.match(line)
        if fence_match is not None:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
            builder.lines.append(line)
            after_text = False
            continue
        if fence is not None:
            builder.lines.append(line)
            continue
        quote = _QUOTE.match(line)
        if quote is not None:
            builder.lines.append(line[quote.end() :])
            after_text = False
            continue
        atx = _atx(line)
        if atx is not None:
            builder.heading(atx[0], _clean_heading(atx[1]))
            after_text = False
            continue
        previous = builder.lines[-1] if builder.lines and after_text else ""
        level = _setext_level(line, previous)
        if level:
            builder.lines.pop()
            builder.heading(level, _clean_heading(previous))
            after_text = False
            continue
        builder.lines.append(line)
        after_text = True
    builder.flush()
    if not builder.sections:
        raise InvalidInput("the file contains no text")
    return ParsedDocument(file_type="md", sections=tuple(builder.sections), pages_total=0, title=builder.title)

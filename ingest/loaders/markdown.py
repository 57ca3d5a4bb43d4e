"""Markdown: one section per heading, carrying its heading path (``("Install", "Linux")``)."""

from __future__ import annotations

import re

from engine.errors import InvalidInput
from ingest.loaders.limits import TextBudget
from ingest.loaders.text import decode_text
from ingest.parsed import ParsedDocument, Section

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_MARKUP = re.compile(r"[*_`]+")
MAX_HEADING_CHARS = 200


def _clean_heading(raw: str) -> str:
    return _INLINE_MARKUP.sub("", raw).strip()[:MAX_HEADING_CHARS]


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
    if match is None or not previous.strip() or _ATX.match(previous):
        return 0
    return 1 if match.group(1).startswith("=") else 2


def parse_markdown(data: bytes) -> ParsedDocument:
    builder = _Builder(TextBudget())
    fence: str | None = None
    for line in decode_text(data).split("\n"):
        fence_match = _FENCE.match(line)
        if fence_match is not None:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
            builder.lines.append(line)
            continue
        if fence is not None:
            builder.lines.append(line)
            continue
        atx = _ATX.match(line)
        if atx is not None:
            builder.heading(len(atx.group(1)), _clean_heading(atx.group(2) or ""))
            continue
        previous = builder.lines[-1] if builder.lines else ""
        level = _setext_level(line, previous)
        if level:
            builder.lines.pop()
            builder.heading(level, _clean_heading(previous))
            continue
        builder.lines.append(line)
    builder.flush()
    if not builder.sections:
        raise InvalidInput("the file contains no text")
    return ParsedDocument(file_type="md", sections=tuple(builder.sections), pages_total=0, title=builder.title)

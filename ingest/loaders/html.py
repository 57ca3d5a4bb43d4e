"""HTML as text via the stdlib parser: no scripts, no styles, headings become the heading path, nothing fetched.

Elements a browser would not show are dropped with their content: the ``hidden`` attribute,
``aria-hidden="true"``, and inline styles with ``display:none``, ``visibility:hidden``, ``font-size:0`` or
``opacity:0``. Hidden text is a classic prompt-injection carrier: indexed, it reaches the model as if the
author had written it for readers. Stylesheet classes are not evaluated (that needs a CSS engine).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from engine.errors import InvalidInput
from ingest.loaders.limits import TextBudget
from ingest.loaders.text import decode_text
from ingest.parsed import ParsedDocument, Section

_SKIPPED = frozenset({"script", "style", "noscript", "template", "title", "svg", "math", "iframe", "object"})
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = frozenset(
    {"p", "div", "br", "li", "tr", "table", "section", "article", "blockquote", "pre", "ul", "ol", "dd", "dt",
     "header", "footer", "main", "nav", "aside", "hr", "figure", "figcaption", "form", "address", "details"}
)
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "wbr"})
_ZERO = r"\s*:\s*0+(?:\.0*)?[a-z%]*\s*(?:!important\s*)?(?:;|$)"
_HIDDEN_STYLE = re.compile(
    rf"display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse)|(?<![-\w])font-size{_ZERO}|(?<![-\w])opacity{_ZERO}",
    re.IGNORECASE,
)
_SPACES = re.compile(r"[ \t\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
MAX_DEPTH_TRACKED = 10_000


class _TextExtractor(HTMLParser):
    def __init__(self, budget: TextBudget) -> None:
        super().__init__(convert_charrefs=True)
        self.budget = budget
        self.skip_depth = 0
        self.heading_level = 0
        self.heading_parts: list[str] = []
        self.stack: list[tuple[int, str]] = []
        self.parts: list[str] = []
        self.sections: list[Section] = []
        self.title_parts: list[str] = []
        self.in_title = False
        self.hidden_tag: str | None = None  # the element that hides everything until its end tag
        self.hidden_depth = 0  # nesting of that tag name inside it

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.hidden_tag is not None:
            self.hidden_depth += tag == self.hidden_tag
            return
        if tag not in _VOID and _is_hidden(attrs):
            self.hidden_tag, self.hidden_depth = tag, 1
            return
        if tag == "title":
            self.in_title = True
        if tag in _SKIPPED and tag not in _VOID:
            self.skip_depth += 1
        elif tag in _HEADINGS and not self.skip_depth:
            self.flush()
            self.heading_level = _HEADINGS[tag]
            self.heading_parts = []
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self.hidden_tag is not None:
            if tag == self.hidden_tag:
                self.hidden_depth -= 1
                if self.hidden_depth == 0:
                    self.hidden_tag = None
            return
        if tag == "title":
            self.in_title = False
        if tag in _SKIPPED and tag not in _VOID:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in _HEADINGS and self.heading_level:
            self._close_heading()
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.hidden_tag is not None:
            return
        if self.in_title:
            self.title_parts.append(data)
        if self.skip_depth:
            return
        if self.heading_level:
            self.heading_parts.append(data)
        else:
            self.parts.append(self.budget.take(data))

    def _close_heading(self) -> None:
        name = _SPACES.sub(" ", " ".join(self.heading_parts)).strip()[:200]
        level, self.heading_level = self.heading_level, 0
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        if name:
            self.stack.append((level, name))

    def flush(self) -> None:
        text = _BLANK_LINES.sub("\n\n", _SPACES.sub(" ", "".join(self.parts))).strip()
        text = "\n".join(line.strip() for line in text.split("\n"))
        self.parts = []
        if text:
            self.sections.append(Section(text=text, heading_path=tuple(n for _, n in self.stack)))


def _is_hidden(attrs: list[tuple[str, str | None]]) -> bool:
    for name, value in attrs:
        if name == "hidden" or (name == "aria-hidden" and (value or "").strip().lower() == "true"):
            return True
        if name == "style" and value and _HIDDEN_STYLE.search(value):
            return True
    return False


def parse_html(data: bytes) -> ParsedDocument:
    # decode_text trusts valid UTF-8 over any <meta charset> claim (a lying charset must not garble the text).
    extractor = _TextExtractor(TextBudget())
    extractor.feed(decode_text(data))
    extractor.close()
    if extractor.heading_level:
        extractor._close_heading()
    extractor.flush()
    if not extractor.sections:
        raise InvalidInput("the HTML file contains no visible text")
    title = _SPACES.sub(" ", "".join(extractor.title_parts)).strip()[:200] or None
    return ParsedDocument(file_type="html", sections=tuple(extractor.sections), pages_total=0, title=title)

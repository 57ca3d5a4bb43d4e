"""Text normalised for indexing, and a check of whether extracted text looks broken.

Two forms of every chunk exist. ``ChunkDraft.text`` is the original text: search results show it and
citation quotes must occur in it verbatim. ``ChunkDraft.embed_text`` is what is embedded (dense) and
BM25-encoded (sparse): ``index_text`` of the chunk text, which repairs what PDF text extraction leaves
behind and then applies ``engine.retrieval.normalize_text``, the character-level form queries are also
matched in (NFKC, so the ligature U+FB01 in "quali\ufb01ed" and full-width letters index as plain ASCII).

Repairs of text extracted from PDFs, line by line and in one linear pass:

* fake bold (every glyph drawn twice, slightly offset): pypdf extracts it as doubled characters
  ("TThhee  qquuiicckk"), a line repeated on itself ("HeadingHeading") or twice in a row; each is indexed once;
* a word hyphenated at a line end ("hen-" / "drerit") is joined when the continuation starts lower-case
  (a compound split at its own hyphen, "well-" / "known", is joined too: without a dictionary the two
  cannot be told apart, and the split form is what search could never find).

``text_warnings`` flags a text layer that search cannot use: broken font maps ((cid:NN) placeholders,
private-use code points, U+FFFD) or noise (an OCR layer of garbage: few tokens shaped like words).
The file is still indexed; the warning tells the uploader why search may miss it.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence

from engine.retrieval import normalize_text

# a word character in the sense "something search can find": a letter or a digit of any script
WORD_CHAR = re.compile(r"[^\W_]")
_LINE_HYPHENS = "-\u00ad\u2010"  # hyphen-minus, soft hyphen, hyphen
_SELF_REPEAT_MIN = 5  # "HeadingHeading" -> "Heading"; shorter halves are often real words ("bonbon")


def index_text(text: str, *, pdf: bool = False) -> str:
    """``text`` as it is embedded and BM25-encoded: ``normalize_text``, after the PDF repairs when ``pdf``.

    The repairs are for text extracted from PDFs only: in a text file, a CSV or a log, a line repeated
    on itself or twice in a row is content, not an overprint.
    """
    if not pdf:
        return normalize_text(text)
    lines: list[str] = []
    previous: str | None = None
    for raw in text.split("\n"):
        line = _undouble_line(raw.strip())
        if line and line == previous and WORD_CHAR.search(line):
            continue  # the same line twice in a row: a fake-bold overprint
        previous = line
        if lines and _joins(lines[-1], line):
            lines[-1] = lines[-1][:-1] + line
        else:
            lines.append(line)
    return normalize_text("\n".join(lines))


def has_words(text: str) -> bool:
    """True when ``text`` contains a letter or digit (a chunk without any is never indexed)."""
    return WORD_CHAR.search(text) is not None


def _joins(line: str, following: str) -> bool:
    """``line`` ends in a hyphenated word part and ``following`` continues it in lower case."""
    if len(line) < 2 or line[-1] not in _LINE_HYPHENS or not following:
        return False
    if line[-1] == "\u00ad":
        return following[0].isalpha()
    return line[-2].isalpha() and following[0].islower()


def _is_doubled(token: str) -> bool:
    return len(token) >= 2 and len(token) % 2 == 0 and token[0::2] == token[1::2]


def _undouble_line(line: str) -> str:
    """Undo fake bold on one line: doubled glyphs ("TThhee") and a line printed twice ("AbcdeAbcde")."""
    if not line:
        return line
    tokens = line.split()
    doubled = [_is_doubled(t) for t in tokens]
    # a single token is undoubled only when unmistakable: 4+ characters, at least two different, a letter
    strong = [
        d and len(t) >= 4 and len(set(t)) > 1 and any(c.isalpha() for c in t)
        for t, d in zip(tokens, doubled, strict=True)
    ]
    if any(strong):
        mostly = sum(doubled) * 2 >= len(tokens)  # in a mostly doubled line "aa" is a doubled "a" too
        line = " ".join(
            t[0::2] if (s or (mostly and d)) else t for t, d, s in zip(tokens, doubled, strong, strict=True)
        )
    return _self_repeat(line)


def _self_repeat(line: str) -> str:
    """``XX`` or ``X X`` (X of 5+ characters with a letter) -> ``X``; anything else unchanged."""
    n = len(line)
    half = n // 2  # for odd n the middle character must be the space between the copies
    if n >= 2 * _SELF_REPEAT_MIN and line[:half] == line[n - half :] and line[half : n - half].strip() == "":
        first = line[:half].rstrip()
        if len(first) >= _SELF_REPEAT_MIN and has_words(first):
            return first
    return line


# --- does the extracted text look broken? ----------------------------------------------------

_CID = re.compile(r"\(cid:\d+\)")
_PRIVATE = re.compile("[\ue000-\uf8ff\ufffd\U000f0000-\U0010ffff]+")  # private use areas, replacement char
_JUDGED_CHARS = 2_000  # of each page, for the word-shape check: ~300 tokens, plenty for a share
BROKEN_SHARE = 0.15  # of a document's visible characters, for a warning about the whole file
BROKEN_PAGE_SHARE = 0.30  # of one page's, for a warning naming pages
_MIN_VISIBLE = 20
NOISE_SHARE = 0.5  # below this share of word-shaped tokens the text reads as noise
_MIN_JUDGED = 30  # tokens needed before judging
_VOWELS = frozenset("aeiouy")
# ASCII punctuation, guillemets, curly quotes, bullets, en and em dash
_EDGE_PUNCTUATION = "\"'`()[]{}<>.,;:!?*/\\|-\u00ab\u00bb\u201c\u201d\u2018\u2019\u201e\u2022\u00b7\u2013\u2014"
_ONE_LETTER_WORDS = frozenset("aoyeà")
_TECHNICAL = re.compile(r"[\d._/@+=()\[\]{}<>]")
_PART_SEPARATORS = re.compile("[-'\u2019]")  # hyphen, apostrophe, right single quote


def _broken_chars(text: str) -> tuple[int, int]:
    """(broken characters, visible characters): (cid:NN) placeholders, private use, U+FFFD."""
    cid = sum(map(len, _CID.findall(text))) if "(cid:" in text else 0
    private = sum(map(len, _PRIVATE.findall(text)))
    return cid + private, len("".join(text.split()))


def _is_latin_letter(c: str) -> bool:
    return c.isalpha() and (c < "\u0250" or "\u1e00" <= c <= "\u1eff")


def _base(c: str) -> str:
    return unicodedata.normalize("NFD", c)[0].lower()


def _word_shaped(word: str) -> bool:
    """A cheap guess at "this could be a word": length, a vowel, no long consonant run or letter run, sane casing."""
    if len(word) == 1:
        return word.isupper() or word in _ONE_LETTER_WORDS  # labels and names (C, X); a, o, y, e
    if len(word) > 45:
        return False
    if word.isupper() and len(word) <= 6:
        return True  # acronyms: PDF, HTTP, XML
    bases = [_base(c) for c in word]
    if not any(b in _VOWELS for b in bases):
        return False
    run = longest = repeat = 0
    for i, b in enumerate(bases):
        run = 0 if b in _VOWELS else run + 1
        longest = max(longest, run)
        repeat = repeat + 1 if i and b == bases[i - 1] else 0
        if longest > 7 or repeat >= 3:  # Rechtsschutz has 7 in a row, Schifffahrt three f
            return False
    # casing: lower, Title, UPPER or a few inner capitals (iPhone, inputFileName); not aBcDeFgH
    return sum(1 for a, b in itertools.pairwise(word) if a.islower() and b.isupper()) <= 3


def _word_counts(text: str) -> tuple[int, int]:
    """(word-shaped, judged) tokens with Latin letters; numbers, other scripts, technical tokens are not judged.

    A token is judged by its parts between hyphens and apostrophes, edge punctuation stripped. A token with
    digits or ``. _ / @ + = ( ) [ ] { } < >`` inside (v2, x86, e.g, file_name, a URL, f(x)) is technical:
    not judged. Other punctuation inside a word (``a;b``, ``l|i``, ``r!n``) is what garbled text is made of.
    """
    shaped = judged = 0
    for token in text[:_JUDGED_CHARS].split():
        core = token.strip(_EDGE_PUNCTUATION)
        if not core or not any(_is_latin_letter(c) for c in core) or _TECHNICAL.search(core):
            continue
        if any(c.isalpha() and not _is_latin_letter(c) for c in core):
            continue  # mixed scripts: not ours to judge
        judged += 1
        parts = [p for p in _PART_SEPARATORS.split(core) if p]
        # a one-letter part after an apostrophe or hyphen is an ending: doesn't, it's, x-ray
        shaped += all(p.isalpha() and _word_shaped(p) for i, p in enumerate(parts) if i == 0 or len(p) > 1)
    return shaped, judged


def _percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


def _describe(pages: Sequence[int]) -> str:
    shown = ", ".join(str(p) for p in pages[:20])
    return shown + (f" and {len(pages) - 20} more" if len(pages) > 20 else "")


_BROKEN_WHAT = "(cid:…) placeholders, private-use or replacement characters"


def text_warnings(pages: Iterable[tuple[int | None, str]]) -> tuple[str, ...]:
    """User-facing warnings when extracted text looks broken; ``pages`` are (page number or None, text).

    A text layer is broken when 15 % of the document's visible characters (or 30 % of a page's) are
    (cid:NN) placeholders, private-use code points or U+FFFD; it is noise when fewer than half of its
    Latin-letter tokens are shaped like words (a vowel, no run of 8 consonants or 4 equal letters, sane casing).
    Both are heuristics and cheap (one pass, no dictionary); they only ever add a warning.
    """
    broken_total = visible_total = shaped_total = judged_total = 0
    broken_pages: list[int] = []
    noisy_pages: list[int] = []
    for page, text in pages:
        broken, visible = _broken_chars(text)
        shaped, judged = _word_counts(text)
        broken_total, visible_total = broken_total + broken, visible_total + visible
        shaped_total, judged_total = shaped_total + shaped, judged_total + judged
        if page is not None and visible >= _MIN_VISIBLE and broken >= BROKEN_PAGE_SHARE * visible:
            broken_pages.append(page)
        if page is not None and judged >= _MIN_JUDGED and shaped < NOISE_SHARE * judged:
            noisy_pages.append(page)
    notes: list[str] = []
    if visible_total >= _MIN_VISIBLE and broken_total >= BROKEN_SHARE * visible_total:
        share = _percent(broken_total, visible_total)
        notes.append(f"text layer looks broken: {share} % of characters are {_BROKEN_WHAT}")
    elif broken_pages:
        notes.append(f"text layer looks broken on page(s) {_describe(broken_pages)}: mostly {_BROKEN_WHAT}")
    if judged_total >= _MIN_JUDGED and shaped_total < NOISE_SHARE * judged_total:
        share = _percent(shaped_total, judged_total)
        notes.append(
            f"text looks like noise: only {share} % of its words look like words (a garbled or poor OCR layer?)"
        )
    elif noisy_pages:
        notes.append(f"text looks like noise on page(s) {_describe(noisy_pages)}: few word-like tokens")
    return tuple(notes)

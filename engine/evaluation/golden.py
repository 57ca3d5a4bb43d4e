"""Golden sets: queries with the files or chunks that should be found, graded.

One query, as JSON (an API body, one line of a JSONL file, or an item of a JSON array)::

    {"query": "how many vacation days?", "files": {"handbook.md": 2, "benefits.pdf": 1}}
    {"query": "parental leave", "files": ["handbook.md"]}               # a list: grade 1 each
    {"id": "q7", "query": "sick note", "chunks": {"<chunk id>": 1}}     # chunk-level judgments

``files`` names files of the knowledge base by name or by id; ``chunks`` names chunk ids (they survive
re-embedding, not a chunking change). A query judges files or chunks, not both. Grades are integers >= 0, at
least one of them positive (gain in nDCG is the grade; recall and MRR count grades > 0 as relevant).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

from engine.errors import InvalidInput

MAX_QUERIES = 2000
MAX_JUDGMENTS = 200  # relevant files or chunks per query
MAX_QUERY_CHARS = 4000  # what a search accepts (engine.retrieval.MAX_QUERY_CHARS)
MAX_REF_CHARS = 255
MAX_GRADE = 100

Level = Literal["file", "chunk"]


class GoldenQuery(msgspec.Struct, frozen=True, kw_only=True):
    """One judged query. ``files`` or ``chunks`` maps a reference to its grade."""

    id: str
    query: str
    files: dict[str, int] = msgspec.field(default_factory=dict)
    chunks: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def level(self) -> Level:
        return "chunk" if self.chunks else "file"

    @property
    def judgments(self) -> dict[str, int]:
        return self.chunks or self.files


def parse_golden(data: bytes | str) -> list[GoldenQuery]:
    """A golden set from a file's bytes: a JSON array, a JSON object with ``queries``, or JSONL (one per line).

    Raises:
        InvalidInput: Not JSON/JSONL, or a query that breaks the rules above (the message says which line).
    """
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    stripped = text.strip()
    if not stripped:
        raise InvalidInput("the golden set is empty")
    if stripped[0] == "[" or stripped[0] == "{":
        try:
            whole = msgspec.json.decode(stripped)
        except (msgspec.DecodeError, RecursionError):
            whole = None  # several objects, one per line: JSONL
        if isinstance(whole, list):
            return parse_golden_items(whole)
        if isinstance(whole, dict):
            return parse_golden_items(whole.get("queries", [whole]))
    items: list[Any] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(msgspec.json.decode(line))
        except (msgspec.DecodeError, RecursionError) as exc:
            raise InvalidInput(f"golden set line {number} is not JSON: {exc}") from exc
    return parse_golden_items(items, line_numbers=True)


def parse_golden_items(items: object, *, line_numbers: bool = False) -> list[GoldenQuery]:
    """Check decoded queries (API bodies or parsed file items) and give each an id (``q1``, ``q2``… by default)."""
    if not isinstance(items, list):
        raise InvalidInput("'queries' must be a list")
    if not items:
        raise InvalidInput("the golden set has no queries")
    if len(items) > MAX_QUERIES:
        raise InvalidInput(f"a golden set holds at most {MAX_QUERIES} queries")
    where = "line" if line_numbers else "query"
    queries = [_query(item, n, where) for n, item in enumerate(items, 1)]
    seen: set[str] = set()
    for query in queries:
        if query.id in seen:
            raise InvalidInput(f"query id {query.id!r} appears twice")
        seen.add(query.id)
    return queries


def golden_to_builtins(queries: Iterable[GoldenQuery]) -> list[dict[str, Any]]:
    """JSON-ready form (what is stored), without empty judgment maps."""
    out = []
    for query in queries:
        item: dict[str, Any] = {"id": query.id, "query": query.query}
        item["chunks" if query.chunks else "files"] = dict(query.judgments)
        out.append(item)
    return out


def _query(item: object, n: int, where: str) -> GoldenQuery:
    if not isinstance(item, dict):
        raise InvalidInput(f"golden set {where} {n} must be an object with 'query' and 'files' or 'chunks'")
    unknown = set(item) - {"id", "query", "files", "chunks"}
    if unknown:
        raise InvalidInput(f"golden set {where} {n}: unknown field(s) {sorted(unknown)}")
    query = item.get("query")
    if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"golden set {where} {n}: 'query' must be text of 1 to {MAX_QUERY_CHARS} characters")
    ident = item.get("id", f"q{n}")
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)
    if not isinstance(ident, str) or not ident or len(ident) > 64:
        raise InvalidInput(f"golden set {where} {n}: 'id' must be text of 1 to 64 characters")
    files, chunks = item.get("files"), item.get("chunks")
    if (files is None) == (chunks is None):
        raise InvalidInput(f"golden set {where} {n}: give the relevant 'files' or 'chunks' (one of them)")
    judged = _judgments(files if files is not None else chunks, n, where)
    if not any(grade > 0 for grade in judged.values()):
        raise InvalidInput(f"golden set {where} {n}: at least one file or chunk must have a grade above 0")
    if files is not None:
        return GoldenQuery(id=ident, query=query.strip(), files=judged)
    return GoldenQuery(id=ident, query=query.strip(), chunks=judged)


def _judgments(value: object, n: int, where: str) -> dict[str, int]:
    if isinstance(value, list):
        value = dict.fromkeys(value, 1) if all(isinstance(v, str) for v in value) else None
    if not isinstance(value, Mapping) or not value:
        raise InvalidInput(f"golden set {where} {n}: relevant items must be a non-empty list of names or an object "
                           "of name -> grade")  # fmt: skip
    if len(value) > MAX_JUDGMENTS:
        raise InvalidInput(f"golden set {where} {n}: at most {MAX_JUDGMENTS} relevant items per query")
    judged: dict[str, int] = {}
    for ref, grade in value.items():
        if not isinstance(ref, str) or not ref.strip() or len(ref) > MAX_REF_CHARS:
            raise InvalidInput(f"golden set {where} {n}: a relevant item must be named by 1 to {MAX_REF_CHARS} "
                               "characters")  # fmt: skip
        if isinstance(grade, bool) or not isinstance(grade, int) or not 0 <= grade <= MAX_GRADE:
            raise InvalidInput(f"golden set {where} {n}: the grade of {ref!r} must be an integer from 0 to {MAX_GRADE}")
        judged[ref.strip()] = grade
    return judged

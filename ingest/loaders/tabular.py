"""CSV (one "column: value" line per cell, rows separated by blank lines) and JSON (pretty-printed), both bounded."""

from __future__ import annotations

import csv
import io
import json

from engine.errors import InvalidInput
from ingest.loaders.limits import MAX_CSV_ROWS, MAX_JSON_DEPTH, TextBudget
from ingest.loaders.text import clean_text, decode_text
from ingest.parsed import ParsedDocument, Section

_MAX_FIELD_CHARS = 1_000_000
_SNIFF_CHARS = 64 * 1024


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _row_text(header: list[str], row: list[str]) -> str:
    lines = []
    for index, value in enumerate(row):
        value = value.strip()
        if not value:
            continue
        name = header[index] if index < len(header) and header[index] else f"column {index + 1}"
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def parse_csv(data: bytes) -> ParsedDocument:
    text = decode_text(data)
    csv.field_size_limit(_MAX_FIELD_CHARS)
    reader = csv.reader(io.StringIO(text), _dialect(text[:_SNIFF_CHARS]))
    budget = TextBudget()
    rows: list[str] = []
    try:
        header = [name.strip() for name in next(reader, [])]
        for count, row in enumerate(reader, start=1):
            if count > MAX_CSV_ROWS:
                raise InvalidInput(f"the CSV file has more than {MAX_CSV_ROWS:,} rows")
            line = _row_text(header, row)
            if line:
                rows.append(budget.take(line))
    except csv.Error as exc:
        raise InvalidInput(f"the CSV file is malformed near line {reader.line_num}") from exc
    if not rows and header:
        rows.append(budget.take(", ".join(header)))  # a header-only file is still searchable
    if not rows:
        raise InvalidInput("the CSV file contains no rows")
    return ParsedDocument(file_type="csv", sections=(Section(text="\n\n".join(rows)),), pages_total=0)


def _depth(value: object, limit: int) -> int:
    """Nesting depth of a decoded JSON value, iteratively (deep input must not overflow the C stack)."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
    return deepest


def parse_json(data: bytes) -> ParsedDocument:
    text = decode_text(data)
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise InvalidInput("the JSON file is nested too deeply") from exc
    except ValueError as exc:
        raise InvalidInput(f"the file is not valid JSON ({str(exc).split(':')[0]})") from exc
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise InvalidInput(f"the JSON file is nested more than {MAX_JSON_DEPTH} levels deep")
    # clean_text: JSON escapes can encode lone surrogates and control characters
    pretty = TextBudget().take(clean_text(json.dumps(value, indent=2, ensure_ascii=False)))
    if not pretty.strip() or value in ({}, [], None, ""):
        raise InvalidInput("the JSON file contains no data")
    return ParsedDocument(file_type="json", sections=(Section(text=pretty),), pages_total=0)

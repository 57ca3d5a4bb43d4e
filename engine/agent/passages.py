"""How retrieved chunks are shown to a model: numbered passages the answer cites as ``[n]``.

One format, written by the loop and read back by the built-in extractive model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engine.types import ScoredChunk

_HEADER = re.compile(r"(?m)^\[(\d+)\] source: [^\n]*\n")


def source_label(hit: ScoredChunk) -> str:
    chunk = hit.chunk
    label = chunk.file_name
    if chunk.page is not None:
        label += f", page {chunk.page}"
    if chunk.heading_path:
        label += " > " + " / ".join(chunk.heading_path)
    return label


def render_passages(hits: Sequence[ScoredChunk], numbers: Sequence[int]) -> str:
    """Numbered passages, one per hit: ``[n] source: file, page p`` then the chunk text."""
    if not hits:
        return "No passages matched the query."
    blocks = [
        f"[{n}] source: {source_label(hit)}\n{hit.chunk.text.strip()}" for hit, n in zip(hits, numbers, strict=True)
    ]
    return "\n\n".join(blocks)


def parse_passages(text: str) -> list[tuple[int, str]]:
    """``(n, passage text)`` pairs from ``render_passages`` output (empty for any other text)."""
    headers = list(_HEADER.finditer(text))
    out: list[tuple[int, str]] = []
    for i, match in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        out.append((int(match.group(1)), text[match.end() : end].strip()))
    return out

"""``ragline ingest PATH... --kb NAME --dry-run``: what the files would become, with nothing stored."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import EngineError

if TYPE_CHECKING:
    from api.container import Services


async def dry_run(services: Services, workspace_id: str, kb_id: str | None, named: Sequence[Path],
                  found: Sequence[Path]) -> int:  # fmt: skip
    """Print one line per file and a total; exit 1 when a named file would be refused or would fail."""
    chunks = tokens = failing = 0
    seconds = 0.0
    for path in [*named, *found]:
        try:
            with path.open("rb") as fh:
                info = await services.previews.preview(workspace_id, kb_id, filename=path.name, source=fh)
        except EngineError as exc:
            failing += path in named
            print(f"  {'refused' if path in named else 'skipped'} {path}: {exc.message}", file=sys.stderr)
            continue
        if info.would_fail:
            failing += 1
            print(f"  {path}: would fail: {info.would_fail}")
            continue
        chunks, tokens, seconds = chunks + info.chunks, tokens + info.tokens, seconds + (info.embed_seconds or 0.0)
        notes = [*(["already in the knowledge base (same content)"] if info.duplicate_of else []), *info.warnings]
        print(
            f"  {path}: {info.pages} pages, {info.chunks} chunks, {info.tokens} tokens, ~{info.embed_seconds:.1f} s"
            + (f"; {'; '.join(notes)}" if notes else "")
        )
    latest = services.previews.meter.latest
    rate = latest.tokens_per_s if latest is not None else 0.0
    print(
        f"dry run: {chunks} chunks, {tokens} tokens, ~{seconds:.1f} s to embed at {rate:.0f} tokens/s measured "
        f"now; {failing} would fail; nothing stored"
    )
    return 1 if failing else 0

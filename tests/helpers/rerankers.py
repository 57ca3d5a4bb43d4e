"""A small real reranker for tests of the plug-in path: scores hits by query-word overlap."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from engine.settings import Settings
from engine.types import ScoredChunk


class WordOverlapReranker:
    async def rerank(self, query: str, hits: Sequence[ScoredChunk]) -> list[ScoredChunk]:
        words = set(query.lower().split())
        rescored = [
            msgspec.structs.replace(h, score=float(len(words & set(h.chunk.text.lower().split())))) for h in hits
        ]
        return sorted(rescored, key=lambda h: h.score, reverse=True)


def word_overlap(settings: Settings) -> WordOverlapReranker:
    return WordOverlapReranker()

"""A local sentence-transformers cross-encoder behind the ``Reranker`` port (nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from engine.types import ScoredChunk


class CrossEncoderReranker:
    """Scores (query, chunk) pairs with a local cross-encoder model and reorders the hits."""

    def __init__(self, model_path: str, *, batch_size: int = 32) -> None:
        from sentence_transformers import CrossEncoder

        self._model: Any = CrossEncoder(model_path, device="cpu", trust_remote_code=False)
        self._batch_size = batch_size
        self._limiter = anyio.CapacityLimiter(1)

    def _scores(self, query: str, texts: Sequence[str]) -> list[float]:
        scores = self._model.predict([(query, t) for t in texts], batch_size=self._batch_size, show_progress_bar=False)
        return [float(s) for s in scores]

    async def rerank(self, query: str, hits: Sequence[ScoredChunk]) -> list[ScoredChunk]:
        if not hits:
            return []
        scores = await anyio.to_thread.run_sync(
            self._scores, query, [h.chunk.text for h in hits], limiter=self._limiter
        )
        rescored = [msgspec.structs.replace(h, score=s) for h, s in zip(hits, scores, strict=True)]
        return sorted(rescored, key=lambda h: h.score, reverse=True)

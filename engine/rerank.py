"""Optional second-stage reranking behind the ``Reranker`` port (off by default).

``RAGLINE_RERANKER`` chooses one: ``cross-encoder:/path/to/model`` loads a sentence-transformers
CrossEncoder from a local directory (nothing is downloaded), ``package.module:factory`` calls a
factory of your own with the ``Settings`` and uses what it returns.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from engine.ports import Reranker
from engine.settings import Settings
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


def load_reranker(settings: Settings) -> Reranker | None:
    """The configured reranker, or ``None`` when reranking is off."""
    spec = settings.reranker.strip()
    if not spec:
        return None
    if spec.startswith("cross-encoder:"):
        return CrossEncoderReranker(spec.removeprefix("cross-encoder:"))
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError("RAGLINE_RERANKER must be 'cross-encoder:/model/path' or 'package.module:factory'")
    factory = getattr(importlib.import_module(module_name), attr)
    reranker: Reranker = factory(settings)
    return reranker

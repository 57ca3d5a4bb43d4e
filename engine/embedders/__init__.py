"""Embedder adapters and the factory that picks one from settings."""

from __future__ import annotations

from engine.ports import Embedder
from engine.settings import Settings


def create_embedder(settings: Settings) -> Embedder:
    """Build the configured embedder (``RAGLINE_EMBEDDER``)."""
    if settings.embedder == "minilm":
        from engine.embedders.sentence_transformer import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(threads=settings.resolved_torch_threads)
    if settings.embedder == "minilm-onnx-int8":
        from engine.embedders.onnx_int8 import OnnxInt8Embedder

        return OnnxInt8Embedder(cache_dir=settings.model_cache_dir, threads=settings.resolved_torch_threads)
    raise ValueError(f"unknown RAGLINE_EMBEDDER {settings.embedder!r} (use 'minilm' or 'minilm-onnx-int8')")

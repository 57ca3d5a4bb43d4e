"""Vector store adapters: the embedded qdrant-edge shard (default) and a Qdrant server (``QDRANT_URL``)."""

from __future__ import annotations

from typing import Literal

from engine.ports import VectorStore
from engine.settings import Settings


def create_vector_store(settings: Settings, dim: int) -> VectorStore:
    """The store the settings ask for: a Qdrant server when ``QDRANT_URL`` is set, else the embedded shard.

    Args:
        settings: Runtime configuration (``qdrant_url``, ``qdrant_api_key``, ``qdrant_collection``, ``data_dir``).
        dim: The embedder's dense vector dimension.

    Raises:
        Conflict: The embedded shard is already open in another process.
    """
    if settings.qdrant_url:
        from engine.stores.qdrant_server import QdrantServerVectorStore

        return QdrantServerVectorStore(
            url=settings.qdrant_url,
            api_key=settings.qdrant_api_key or None,
            collection=settings.qdrant_collection,
            dim=dim,
            idf_scope=_idf_scope(settings),
        )
    from engine.stores.edge import EdgeVectorStore
    from engine.stores.edge_chunks import CHARS_PER_MB

    if settings.search_cache_mb < 0:
        raise ValueError("RAGLINE_SEARCH_CACHE_MB must be 0 or more")
    cache_chars = settings.search_cache_mb * CHARS_PER_MB
    return EdgeVectorStore(settings.qdrant_path, dim, idf_scope=_idf_scope(settings), chunk_cache_chars=cache_chars)


def _idf_scope(settings: Settings) -> Literal["workspace", "global"]:
    if settings.bm25_idf_scope not in ("workspace", "global"):
        raise ValueError("RAGLINE_BM25_IDF_SCOPE must be 'workspace' or 'global'")
    return "global" if settings.bm25_idf_scope == "global" else "workspace"


__all__ = ["create_vector_store"]

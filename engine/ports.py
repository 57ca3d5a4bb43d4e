"""Ports: the Protocols the engine depends on. Adapters are the only importers of vendor SDKs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from engine.llm import ModelEndpoint, ModelEvent, ModelRequest
from engine.types import (
    ChunkRecord,
    MetadataValue,
    ScoredChunk,
    SearchFilters,
    SparseVector,
    VectorPoint,
    VectorQuery,
)


@runtime_checkable
class Embedder(Protocol):
    """Dense text embeddings, L2-normalised, in input order. Encoding runs off the event loop.

    ``max_tokens`` and ``token_count`` are what the chunker needs to make every chunk fit the model's
    window: cl100k counts alone do not (Russian text runs ~2.2 word-pieces per cl100k token).
    """

    name: str
    dim: int
    max_tokens: int  # the model's input window in its own tokens, special tokens included

    def token_count(self, text: str) -> int:
        """Length of ``text`` in the model's own tokens, without special tokens (blocking, fast)."""
        ...

    def warm_up(self) -> None:
        """Load the model now (blocking), so the first request does not pay for it."""
        ...

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...


class SparseEncoder(Protocol):
    """Sparse term vectors (BM25 term frequencies; IDF is applied by Qdrant's IDF modifier)."""

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def encode_query(self, text: str) -> SparseVector: ...


class VectorStore(Protocol):
    """Chunks with dense + sparse vectors in one collection; every call is workspace-scoped."""

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points. New points are hidden from ``search`` until ``publish_files``."""
        ...

    async def publish_files(self, workspace_id: str, file_ids: Sequence[str]) -> None:
        """Make every chunk of these files searchable in one operation (a file is searchable all or nothing)."""
        ...

    async def relabel_file(
        self, workspace_id: str, file_id: str, *, tags: Sequence[str], metadata: Mapping[str, MetadataValue]
    ) -> None:
        """Replace the tags and the metadata of every chunk of a file (published or not) in one operation."""
        ...

    async def search(self, query: VectorQuery) -> list[ScoredChunk]: ...

    async def get_chunks(self, workspace_id: str, file_id: str, ordinals: Sequence[int]) -> list[ChunkRecord]: ...

    async def count(self, filters: SearchFilters) -> int: ...

    async def delete_file(self, workspace_id: str, file_id: str) -> None: ...

    async def delete_kb(self, workspace_id: str, kb_id: str) -> None: ...

    async def purge_files(self, file_ids: Sequence[str]) -> None:
        """Delete every point of these files in any workspace (crash-recovery sweep of orphans only)."""
        ...

    async def file_ids(self) -> set[str]:
        """Every file id that has at least one point (for orphan sweeps after a crash)."""
        ...

    async def ping(self) -> None:
        """Raise ``Unavailable`` when the store cannot answer (a Qdrant server that is down)."""
        ...

    async def close(self) -> None: ...


class Reranker(Protocol):
    """Optional second-stage scorer (off by default: no reranking model ships offline)."""

    async def rerank(self, query: str, hits: Sequence[ScoredChunk]) -> list[ScoredChunk]: ...


class ModelClient(Protocol):
    """Streams one model call as typed ``ModelEvent``s. Raises ``ModelError`` on provider failure.

    Every stream ends with exactly one ``Finish``; ``ToolCallReady`` and ``UsageReport`` come before it.
    """

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]: ...


class ModelProvider(Protocol):
    """Picks the client for a model name (``ragline/extractive``, ``openai/gpt-4o-mini``, ...).

    ``endpoint``: a model configuration's endpoint and credentials (else the server's). Raises ``InvalidInput``
    for a name no client serves. Cheap: clients import their SDK lazily.
    """

    def get_model(self, name: str, endpoint: ModelEndpoint | None = None) -> ModelClient: ...

    def warm_up(self) -> None:
        """Import and configure what the default model needs (blocking), so the first run does not pay."""
        ...


@runtime_checkable
class IndexBuilder(Protocol):
    """A vector store whose search index is built by an explicit, offline step (the embedded shard)."""

    def optimize(self) -> bool: ...

    def indexed_vectors(self) -> int: ...


class ToolResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a tool returns: ``content`` goes to the model, ``summary`` to the ``tool_end`` event."""

    content: str
    summary: str
    is_error: bool = False
    sources: tuple[ScoredChunk, ...] = ()  # chunks retrieved by this call (citation checks)


class ToolContext(msgspec.Struct, frozen=True, kw_only=True):
    """Per-run context handed to tools: who is calling and which knowledge they may read."""

    run_id: str
    workspace_id: str
    kb_ids: tuple[str, ...] = ()


@runtime_checkable
class Tool(Protocol):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult: ...


class Collections(Protocol):
    """Named collections besides the default one, on the same backend (knowledge bases' own indexes, #19)."""

    def open(self, name: str, dim: int) -> VectorStore:
        """The store of collection ``name`` (created, with the default one's layout, if missing); one per name."""
        ...

    async def drop(self, name: str) -> None:
        """Delete the collection and everything in it (a missing one is fine)."""
        ...

    async def point_alias(self, alias: str, name: str) -> None:
        """Make ``alias`` name collection ``name``, atomically (a Qdrant server's native aliases; the embedded
        store has none, and knowledge bases' pointers live in the metadata database either way)."""
        ...

    async def close(self) -> None: ...

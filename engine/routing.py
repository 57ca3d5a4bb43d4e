"""Knowledge bases with an index of their own: search and writes routed between collections.

Every knowledge base starts in the default collection (one collection, every workspace, the server's embedder
and chunking). A knowledge base switched to another embedder or chunking gets a dedicated collection; which
collection is live for it is a pointer in the metadata database, read through an ``IndexDirectory``.

``RoutedRetriever`` resolves the pointers once per search, so a search runs on exactly one collection per
knowledge base, with that collection's embedder for the query; when no knowledge base of the workspace has a
collection of its own (the usual case) it is the plain ``Retriever``, untouched. ``RoutedVectorStore`` sends
writes where the knowledge base's points may be: file-level operations (publish, relabel, delete) go to the default
collection and to every dedicated collection of the workspace, including one being built (so a deletion during
a switch reaches the new collection too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from engine.ports import Embedder, VectorStore
from engine.retrieval import Retriever, SearchHit, SearchRequest
from engine.types import ChunkRecord, MetadataValue, ScoredChunk, SearchFilters, VectorPoint, VectorQuery


@dataclass(frozen=True, eq=False)
class Index:
    """Where a knowledge base's chunks live and how they were made."""

    collection: str  # the dedicated collection's name
    embedder_name: str
    embedder: Embedder
    store: VectorStore
    chunk_tokens: int
    chunk_overlap: int


@dataclass(frozen=True)
class WorkspaceRoutes:
    """One reading of a workspace's pointers: every knowledge base, and the live index of the dedicated ones."""

    kb_ids: tuple[str, ...]
    dedicated: Mapping[str, Index]  # kb_id -> live index (knowledge bases absent here: the default collection)


class IndexDirectory(Protocol):
    """The pointers (``ingest.indexes.SqlIndexDirectory`` reads them from the metadata database)."""

    async def routes(self, workspace_id: str) -> WorkspaceRoutes:
        """The workspace's routes; cheap when no knowledge base of it has a collection of its own."""
        ...

    async def write_targets(self, workspace_id: str) -> list[VectorStore]:
        """Every dedicated collection of the workspace that holds or is being given points (live, being built,
        or retired but not yet dropped)."""
        ...

    async def all_stores(self) -> list[VectorStore]:
        """Every dedicated collection of every workspace (orphan sweeps)."""
        ...

    async def drop_kb(self, workspace_id: str, kb_id: str) -> None:
        """The knowledge base is deleted: drop its dedicated collections."""
        ...


class RoutedRetriever(Retriever):
    """A ``Retriever`` that searches each knowledge base in its live collection, with its embedder."""

    def __init__(self, *, directory: IndexDirectory, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.directory = directory

    async def retrieve(self, request: SearchRequest) -> list[SearchHit]:
        routes = await self.directory.routes(request.filters.workspace_id)
        wanted = request.filters.kb_ids
        dedicated = [kb for kb in (routes.dedicated if wanted is None else wanted) if kb in routes.dedicated]
        if not dedicated:
            return await super().retrieve(request)
        self._validate(request)  # the same refusals as a plain search, before any collection is asked
        default_kbs = tuple(kb for kb in (routes.kb_ids if wanted is None else wanted) if kb not in routes.dedicated)
        groups: list[tuple[Retriever, tuple[str, ...]]] = []
        if default_kbs:
            groups.append((self._plain(self.embedder, self.store), default_kbs))
        by_index: dict[int, tuple[Index, list[str]]] = {}
        for kb in dedicated:
            index = routes.dedicated[kb]
            by_index.setdefault(id(index.store), (index, []))[1].append(kb)
        groups.extend((self._plain(index.embedder, index.store), tuple(kbs)) for index, kbs in by_index.values())
        results = await asyncio.gather(*(
            retriever.retrieve(_narrowed(request, kbs)) for retriever, kbs in groups
        ))  # fmt: skip
        if len(results) == 1:
            return results[0]
        # Scores of different collections (and models) are not on one scale; hybrid search fuses into
        # comparable ranges (DBSF), so a merge by score is the least surprising order.
        merged = sorted((hit for hits in results for hit in hits), key=lambda hit: hit.score, reverse=True)
        return merged[: max(1, min(request.top_k, self.max_top_k))]

    def _plain(self, embedder: Embedder, store: VectorStore) -> Retriever:
        return Retriever(
            embedder=embedder, sparse=self.sparse, store=store, max_top_k=self.max_top_k, reranker=self.reranker
        )


def _narrowed(request: SearchRequest, kb_ids: tuple[str, ...]) -> SearchRequest:
    return msgspec.structs.replace(request, filters=msgspec.structs.replace(request.filters, kb_ids=kb_ids))


class RoutedVectorStore:
    """``VectorStore`` over the default collection and the dedicated ones (see the module docstring).

    Reads (``search``, ``get_chunks``, ``count``) answer from the default collection: searches are routed by
    ``RoutedRetriever``, which asks each collection itself.
    """

    def __init__(self, default: VectorStore, directory: IndexDirectory) -> None:
        self.default = default
        self.directory = directory

    async def _targets(self, workspace_id: str) -> list[VectorStore]:
        return [self.default, *await self.directory.write_targets(workspace_id)]

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Into the default collection: points for a dedicated collection are written to its store directly
        (``ingest.indexes.embed_file_into``), since only that path embeds with the collection's own model."""
        await self.default.upsert(points)

    async def publish_files(self, workspace_id: str, file_ids: Sequence[str]) -> None:
        for store in await self._targets(workspace_id):
            await store.publish_files(workspace_id, file_ids)

    async def relabel_file(
        self, workspace_id: str, file_id: str, *, tags: Sequence[str], metadata: Mapping[str, MetadataValue]
    ) -> None:
        for store in await self._targets(workspace_id):
            await store.relabel_file(workspace_id, file_id, tags=tags, metadata=metadata)

    async def search(self, query: VectorQuery) -> list[ScoredChunk]:
        return await self.default.search(query)

    async def get_chunks(self, workspace_id: str, file_id: str, ordinals: Sequence[int]) -> list[ChunkRecord]:
        return await self.default.get_chunks(workspace_id, file_id, ordinals)

    async def count(self, filters: SearchFilters) -> int:
        return await self.default.count(filters)

    async def delete_file(self, workspace_id: str, file_id: str) -> None:
        for store in await self._targets(workspace_id):
            await store.delete_file(workspace_id, file_id)

    async def delete_kb(self, workspace_id: str, kb_id: str) -> None:
        await self.default.delete_kb(workspace_id, kb_id)
        await self.directory.drop_kb(workspace_id, kb_id)

    async def purge_files(self, file_ids: Sequence[str]) -> None:
        for store in [self.default, *await self.directory.all_stores()]:
            await store.purge_files(file_ids)

    async def file_ids(self) -> set[str]:
        found = set(await self.default.file_ids())
        for store in await self.directory.all_stores():
            found |= await store.file_ids()
        return found

    async def ping(self) -> None:
        await self.default.ping()

    async def close(self) -> None:
        await self.default.close()

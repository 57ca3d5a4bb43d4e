"""``VectorStore`` on a Qdrant server through ``AsyncQdrantClient``: the scale-out path (``QDRANT_URL``).

Same collection layout and filter semantics as the embedded shard (see ``engine.stores._common``).
``location=":memory:"`` runs qdrant-client's local mode, which the conformance tests use; it ignores
payload indexes and brute-forces every query, so it is for tests only.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from engine.errors import EngineError, InvalidInput, Unavailable
from engine.stores._common import (
    DENSE_VECTOR,
    PAYLOAD_INDEXES,
    PUBLISHED,
    PUBLISHED_IN_FIELD,
    RRF_K,
    SPARSE_VECTOR,
    VISIBILITY_FIELD,
    Condition,
    IdfScope,
    IndexKind,
    MatchCondition,
    RangeCondition,
    candidate_limit,
    check_points,
    check_query,
    chunk_from_payload,
    chunks_from_payloads,
    file_conditions,
    files_conditions,
    filter_conditions,
    first_per_file,
    label_payload,
    point_payload,
    prefetch_limit,
    published_payload,
    workspace_conditions,
)
from engine.types import (
    ChunkRecord,
    MetadataValue,
    ScoredChunk,
    SearchFilters,
    SparseVector,
    VectorPoint,
    VectorQuery,
)


class QdrantServerVectorStore:
    """Vector store in one Qdrant collection, created on first use if missing.

    Args:
        location: ``":memory:"`` for qdrant-client's in-process local mode (tests).
        url: Qdrant server URL, e.g. ``http://qdrant:6333``.
        api_key: Server API key, if the server requires one.
        collection: Collection name.
        dim: Dense vector dimension; an existing collection with another size is refused.
        idf_scope: BM25 IDF over the querying workspace (default, no cross-tenant signal) or the collection.
    """

    def __init__(
        self,
        location: str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        *,
        collection: str,
        dim: int,
        idf_scope: IdfScope = "workspace",
    ) -> None:
        if (location is None) == (url is None):
            raise ValueError("give exactly one of location or url")
        self.collection = collection
        self.dim = dim
        self.idf_scope = idf_scope
        self._local = location is not None
        # No server version probe here: it would be blocking network I/O in a constructor. A mismatch shows
        # up as a failed request on first use instead.
        self._client = AsyncQdrantClient(location=location, url=url, api_key=api_key or None, check_compatibility=False)
        self._ready = False
        self._ready_lock = anyio.Lock()

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points by chunk id. They stay hidden from reads until ``publish_files``."""
        if not points:
            return
        check_points(points, self.dim)
        structs = [
            models.PointStruct(id=point.chunk.id, vector=_point_vectors(point), payload=point_payload(point))
            for point in points
        ]
        await self._call(self._client.upsert, collection_name=self.collection, points=structs, wait=True)

    async def publish_files(self, workspace_id: str, file_ids: Sequence[str]) -> None:
        """Make all chunks of these files searchable in one request."""
        if not file_ids:
            return
        target = _filter(files_conditions(workspace_id, file_ids, published_only=False))
        await self._call(
            self._client.set_payload,
            collection_name=self.collection,
            payload=published_payload(workspace_id),
            points=target,
            wait=True,
        )

    async def relabel_file(
        self, workspace_id: str, file_id: str, *, tags: Sequence[str], metadata: Mapping[str, MetadataValue]
    ) -> None:
        """Replace tags and metadata on every chunk of one file in one request."""
        target = _filter(file_conditions(workspace_id, file_id, published_only=False))
        await self._call(
            self._client.set_payload,
            collection_name=self.collection,
            payload=label_payload(tags, metadata),
            points=target,
            wait=True,
        )

    async def search(self, query: VectorQuery) -> list[ScoredChunk]:
        """Dense, sparse or fused hybrid search over published chunks matching ``query.filters``."""
        check_query(query, self.dim)
        conditions = filter_conditions(query.filters)
        if conditions is None or (query.mode == "sparse" and query.sparse is not None and not query.sparse.indices):
            return []
        response = await self._call(
            self._client.query_points,
            collection_name=self.collection,
            **_query_arguments(query, conditions, self.idf_scope),
        )
        hits = response.points
        if query.group_by == "file":
            hits = first_per_file(hits, [(hit.payload or {}).get("file_id") for hit in hits], query.limit)
        chunks = chunks_from_payloads([hit.payload for hit in hits])
        return [ScoredChunk(chunk=chunk, score=hit.score) for chunk, hit in zip(chunks, hits, strict=True)]

    async def get_chunks(self, workspace_id: str, file_id: str, ordinals: Sequence[int]) -> list[ChunkRecord]:
        """Published chunks of one file with the given ordinals, in ordinal order (missing ones skipped)."""
        wanted = sorted(set(ordinals))
        if not wanted:
            return []
        conditions = [*file_conditions(workspace_id, file_id), MatchCondition("ordinal", tuple(wanted))]
        records, _ = await self._call(
            self._client.scroll,
            collection_name=self.collection,
            scroll_filter=_filter(conditions),
            limit=len(wanted),
            with_payload=True,
            with_vectors=False,
        )
        return sorted((chunk_from_payload(record.payload) for record in records), key=lambda c: c.ordinal)

    async def count(self, filters: SearchFilters) -> int:
        """Exact number of published chunks matching ``filters``."""
        conditions = filter_conditions(filters)
        if conditions is None:
            return 0
        result = await self._call(
            self._client.count, collection_name=self.collection, count_filter=_filter(conditions), exact=True
        )
        return int(result.count)

    async def delete_file(self, workspace_id: str, file_id: str) -> None:
        """Delete every point of one file, published or not."""
        await self._delete(file_conditions(workspace_id, file_id, published_only=False))

    async def delete_kb(self, workspace_id: str, kb_id: str) -> None:
        """Delete every point of one knowledge base, published or not."""
        await self._delete(
            [*workspace_conditions(workspace_id, published_only=False), MatchCondition("kb_id", (kb_id,))]
        )

    async def purge_files(self, file_ids: Sequence[str]) -> None:
        """Delete every point of these files whatever their workspace (orphans after a crash)."""
        if file_ids:
            await self._delete([MatchCondition("file_id", tuple(file_ids))])

    async def file_ids(self) -> set[str]:
        """Every file id with at least one point, published or not, across all workspaces."""
        total = await self._call(self._client.count, collection_name=self.collection, exact=True)
        if total.count == 0:
            return set()
        # The point count bounds the number of distinct file ids, so one facet call sees them all.
        facets = await self._call(
            self._client.facet, collection_name=self.collection, key="file_id", limit=total.count, exact=True
        )
        return {str(hit.value) for hit in facets.hits if hit.count > 0}

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.close()

    # -- other collections of the same server (knowledge bases' own indexes, engine.stores.collections) ------

    def sibling(self, collection: str, dim: int) -> QdrantServerVectorStore:
        """A store on another collection of this server that shares this store's client (its connections; in
        local mode, the same in-memory database). Close only the original."""
        other = copy.copy(self)
        other.collection, other.dim = collection, dim
        other._ready, other._ready_lock = False, anyio.Lock()
        return other

    async def drop_collection(self, collection: str) -> None:
        """Delete another collection of this server (missing: nothing to do)."""
        try:
            await self._client.delete_collection(collection)
        except ResponseHandlingException as exc:
            raise _unavailable(exc) from exc

    async def point_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one atomic alias update (removing it from where it pointed)."""
        try:
            current = await self._client.get_aliases()
            operations: list[Any] = [
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
                for a in current.aliases if a.alias_name == alias
            ]  # fmt: skip
            create = models.CreateAlias(collection_name=collection, alias_name=alias)
            operations.append(models.CreateAliasOperation(create_alias=create))
            await self._client.update_collection_aliases(change_aliases_operations=operations)
        except ResponseHandlingException as exc:
            raise _unavailable(exc) from exc

    async def _delete(self, conditions: list[Condition]) -> None:
        selector = models.FilterSelector(filter=_filter(conditions))
        await self._call(self._client.delete, collection_name=self.collection, points_selector=selector, wait=True)

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the server answers (and the collection is ready)."""
        await self._call(self._client.get_collection, collection_name=self.collection)

    async def _call(self, method: Any, **kwargs: Any) -> Any:
        await self._ensure_collection()
        try:
            return await method(**kwargs)
        except ResponseHandlingException as exc:  # no answer at all: refused, reset, timed out
            raise _unavailable(exc) from exc
        except UnexpectedResponse as exc:
            if exc.status_code is not None and exc.status_code >= 500:
                raise _unavailable(exc) from exc
            raise EngineError(f"Qdrant request failed: {exc}", code="store_error") from exc
        except ValueError as exc:  # local mode's validation errors (bad ids, wrong dimensions)
            raise InvalidInput(str(exc)) from exc

    async def _ensure_collection(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await self._create_collection_if_missing()
                self._ready = True

    async def _create_collection_if_missing(self) -> None:
        try:
            existed = await self._client.collection_exists(self.collection)
            if existed:
                await self._check_dimension()
            else:
                await self._client.create_collection(
                    self.collection,
                    vectors_config={DENSE_VECTOR: models.VectorParams(size=self.dim, distance=models.Distance.COSINE)},
                    # as the embedded shard (engine.stores.edge_requests): int8 copies for the graph walk, re-scored
                    quantization_config=models.ScalarQuantization(
                        scalar=models.ScalarQuantizationConfig(
                            type=models.ScalarType.INT8, quantile=0.99, always_ram=True
                        )
                    ),
                    sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                )
            with warnings.catch_warnings():
                if self._local:  # local mode warns that payload indexes have no effect there
                    warnings.simplefilter("ignore", UserWarning)
                for field, kind in PAYLOAD_INDEXES.items():
                    await self._client.create_payload_index(
                        self.collection, field_name=field, field_schema=_index_schema(kind), wait=True
                    )
            if existed:
                await self._mark_published_in()
        except ResponseHandlingException as exc:
            raise _unavailable(exc) from exc
        except UnexpectedResponse as exc:
            raise EngineError(
                f"cannot prepare Qdrant collection {self.collection!r}: {exc}", code="store_unavailable"
            ) from exc

    async def _mark_published_in(self) -> None:
        """Give points published without ``published_in`` (by a Ragline before it) their workspace there, one
        workspace per request, so that reads find them; on a current collection one scroll that finds nothing."""
        unmarked: list[models.Condition] = [
            models.FieldCondition(key=VISIBILITY_FIELD, match=models.MatchValue(value=PUBLISHED)),
            models.IsEmptyCondition(is_empty=models.PayloadField(key=PUBLISHED_IN_FIELD)),
        ]
        while True:
            found, _ = await self._client.scroll(
                self.collection, scroll_filter=models.Filter(must=unmarked), limit=1, with_payload=["workspace_id"]
            )
            if not found or not found[0].payload:
                return
            workspace = found[0].payload["workspace_id"]
            own = models.FieldCondition(key="workspace_id", match=models.MatchValue(value=workspace))
            await self._client.set_payload(
                self.collection, payload={PUBLISHED_IN_FIELD: workspace},
                points=models.Filter(must=[*unmarked, own]), wait=True,
            )  # fmt: skip

    async def _check_dimension(self) -> None:
        info = await self._client.get_collection(self.collection)
        vectors = info.config.params.vectors
        params = vectors.get(DENSE_VECTOR) if isinstance(vectors, dict) else None
        if params is None or params.size != self.dim:
            raise EngineError(
                f"Qdrant collection {self.collection!r} does not have a {self.dim}-d {DENSE_VECTOR!r} vector",
                code="store_unavailable",
            )


def _index_schema(kind: IndexKind) -> models.PayloadSchemaType | models.KeywordIndexParams:
    if kind == "tenant":
        return models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
    schema_types = {
        "keyword": models.PayloadSchemaType.KEYWORD,
        "integer": models.PayloadSchemaType.INTEGER,
        "float": models.PayloadSchemaType.FLOAT,
    }
    return schema_types[kind]


def _point_vectors(point: VectorPoint) -> dict[str, Any]:
    vectors: dict[str, Any] = {DENSE_VECTOR: list(point.dense)}
    if point.sparse is not None:
        vectors[SPARSE_VECTOR] = _sparse(point.sparse)
    return vectors


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


# float scores for what the int8 copies pick, as on the embedded shard (engine.stores.edge_requests.DENSE_PARAMS)
_DENSE_PARAMS = models.SearchParams(quantization=models.QuantizationSearchParams(rescore=True))


def _query_arguments(query: VectorQuery, conditions: list[Condition], idf_scope: IdfScope) -> dict[str, Any]:
    flt = _filter(conditions)
    sparse_params = None
    if idf_scope == "workspace":
        corpus = models.IdfCorpusParams(corpus=_filter(workspace_conditions(query.filters.workspace_id)))
        sparse_params = models.SearchParams(idf=corpus)
    common: dict[str, Any] = {
        "query_filter": flt, "limit": candidate_limit(query), "with_payload": True, "with_vectors": False,
    }  # fmt: skip
    if query.mode == "dense":
        return {**common, "query": list(query.dense or []), "using": DENSE_VECTOR, "search_params": _DENSE_PARAMS}
    sparse = _sparse(query.sparse) if query.sparse is not None else None
    if query.mode == "sparse":
        return {**common, "query": sparse, "using": SPARSE_VECTOR, "search_params": sparse_params}
    prefetch = [
        models.Prefetch(
            query=list(query.dense or []), using=DENSE_VECTOR, filter=flt, limit=prefetch_limit(query),
            params=_DENSE_PARAMS,
        )
    ]  # fmt: skip
    if sparse is not None and sparse.indices:
        prefetch.append(
            models.Prefetch(
                query=sparse, using=SPARSE_VECTOR, filter=flt, limit=prefetch_limit(query), params=sparse_params
            )
        )
    fusion: models.RrfQuery | models.FusionQuery = (
        models.RrfQuery(rrf=models.Rrf(k=RRF_K))
        if query.fusion == "rrf"
        else models.FusionQuery(fusion=models.Fusion.DBSF)
    )
    return {**common, "query": fusion, "prefetch": prefetch}


def _filter(conditions: list[Condition]) -> models.Filter:
    return models.Filter(must=[_condition(condition) for condition in conditions])


def _condition(condition: Condition) -> models.FieldCondition:
    if isinstance(condition, RangeCondition):
        bounds = models.Range(gte=condition.gte, lt=condition.lt, lte=condition.lte)
        return models.FieldCondition(key=condition.key, range=bounds)
    values = condition.values
    if len(values) == 1:
        return models.FieldCondition(key=condition.key, match=models.MatchValue(value=values[0]))
    return models.FieldCondition(key=condition.key, match=models.MatchAny(any=list(values)))  # type: ignore[arg-type]


def _unavailable(exc: Exception) -> Unavailable:
    return Unavailable(
        f"the vector store (Qdrant server) is unreachable: {str(exc)[:200]}", code="store_unavailable",
        retry_after=5.0, summary="Vector store unavailable",
    )  # fmt: skip

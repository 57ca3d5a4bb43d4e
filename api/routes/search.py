"""Search: dense, sparse (BM25) or hybrid, always inside the caller's workspace."""

from __future__ import annotations

from litestar import Controller, post

from api.auth import VIEWER
from api.container import Services
from api.envelope import Envelope, ok
from api.schemas import Citation, SearchBody, SearchResult
from api.services.identity import Principal
from engine.metadata import metadata_filter
from engine.retrieval import SearchHit, SearchRequest
from engine.types import SearchFilters


def to_result(hit: SearchHit) -> SearchResult:
    c = hit.chunk
    return SearchResult(
        chunk_id=c.id,
        text=c.text,
        score=hit.score,
        file_id=c.file_id,
        file_name=c.file_name,
        file_type=c.file_type,
        kb_id=c.kb_id,
        page=c.page,
        heading_path=list(c.heading_path),
        ordinal=c.ordinal,
        char_start=c.char_start,
        char_end=c.char_end,
        tags=list(c.tags),
        metadata=c.metadata,
        citation=Citation(
            file_id=c.file_id,
            file_name=c.file_name,
            page=c.page,
            chunk_id=c.id,
            ordinal=c.ordinal,
            heading_path=list(c.heading_path),
            char_start=c.char_start,
            char_end=c.char_end,
        ),
        before=[b.text for b in hit.before],
        after=[a.text for a in hit.after],
    )


async def run_search(
    services: Services, principal: Principal, body: SearchBody, kb_ids: list[str] | None
) -> list[SearchResult]:
    filters = SearchFilters(
        workspace_id=principal.workspace_id,  # from the token, never from the request
        kb_ids=principal.narrow_kbs(kb_ids),  # the request narrows, the token's limit bounds
        file_ids=tuple(body.file_ids) if body.file_ids is not None else None,
        file_types=tuple(t.lower().lstrip(".") for t in body.file_types) if body.file_types is not None else None,
        tags=tuple(body.tags) if body.tags is not None else None,
        metadata=metadata_filter(body.metadata),
        page_from=body.page_from,
        page_to=body.page_to,
        created_after=body.created_after,
        created_before=body.created_before,
    )
    hits = await services.retriever.retrieve(
        SearchRequest(
            query=body.query,
            filters=filters,
            top_k=body.top_k,
            mode=body.mode,
            fusion=body.fusion,
            neighbors=body.neighbors,
            group_by=body.group_by,
        )
    )
    return [to_result(h) for h in hits]


class SearchController(Controller):
    path = "/api/v1"
    tags = ["search"]

    @post("/search", opt=VIEWER, status_code=200, summary="Search knowledge bases of the workspace")
    async def search(self, data: SearchBody, services: Services, principal: Principal) -> Envelope[list[SearchResult]]:
        return ok(await run_search(services, principal, data, data.kb_ids))

    @post("/knowledge-bases/{kb_id:str}/search", opt=VIEWER, status_code=200, summary="Search one knowledge base")
    async def search_kb(
        self, kb_id: str, data: SearchBody, services: Services, principal: Principal
    ) -> Envelope[list[SearchResult]]:
        await services.knowledge.get_kb(principal.workspace_id, kb_id)
        principal.require_kb(kb_id)
        return ok(await run_search(services, principal, data, [kb_id]))

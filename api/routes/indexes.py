"""A knowledge base's index (embedder, chunking, collection) and switching it without downtime."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get, post
from msgspec import Meta

from api.auth import EDITOR, VIEWER
from api.container import Services
from api.envelope import Envelope, ok
from api.schemas import Body, Id
from api.services.identity import Principal
from ingest.switch_views import IndexInfo, SwitchInfo


class IndexSwitchCreate(Body):
    """The new settings (omitted ones stay as they are); ``embedder`` is a name from ``GET /embedders``."""

    embedder: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    chunk_tokens: Annotated[int, Meta(ge=16, le=4096)] | None = None
    chunk_overlap: Annotated[int, Meta(ge=0, le=2048)] | None = None
    golden_set_id: Id | None = None  # evaluated on both collections before the swap (default: the newest set)
    auto_swap: bool = True  # false: wait in "ready" for POST .../swap (or a cancel)
    grace_s: Annotated[float, Meta(ge=0, le=86_400)] = 60.0  # the old collection answers this long after the swap


class IndexController(Controller):
    path = "/api/v1/knowledge-bases/{kb_id:str}"
    tags = ["knowledge"]

    @get("/index", opt=VIEWER, summary="What the knowledge base's search runs on: collection, embedder, chunking")
    async def get_index(self, kb_id: str, services: Services, principal: Principal) -> Envelope[IndexInfo]:
        principal.require_kb(kb_id)
        return ok(await services.switches.index_info(principal.workspace_id, kb_id))

    @post(
        "/index-switches",
        opt=EDITOR,
        status_code=202,
        summary="Switch the embedder or chunking without downtime (re-embeds into a new collection, then swaps)",
        description=(
            "Every file is embedded again from its stored original into a new collection while search keeps "
            "answering from the live one; `GET .../index-switches/{id}` shows the progress. With a golden set the "
            "evaluation runs on both collections first. The swap makes the new collection live at once; the old "
            "one is dropped after `grace_s`. A cancel or a failure leaves the live collection as it was."
        ),
    )
    async def start_switch(
        self, kb_id: str, data: IndexSwitchCreate, services: Services, principal: Principal
    ) -> Envelope[SwitchInfo]:
        principal.require_kb(kb_id)
        info = await services.switches.start(
            principal.workspace_id, kb_id, embedder=data.embedder, chunk_tokens=data.chunk_tokens,
            chunk_overlap=data.chunk_overlap, golden_set_id=data.golden_set_id, auto_swap=data.auto_swap,
            grace_s=data.grace_s, actor=principal.user_id,
        )  # fmt: skip
        return ok(info, "Index switch started")

    @get("/index-switches", opt=VIEWER, summary="The knowledge base's index switches, newest first")
    async def list_switches(self, kb_id: str, services: Services, principal: Principal) -> Envelope[list[SwitchInfo]]:
        principal.require_kb(kb_id)
        return ok(await services.switches.list_switches(principal.workspace_id, kb_id))

    @get("/index-switches/{switch_id:str}", opt=VIEWER, summary="An index switch and its progress")
    async def get_switch(
        self, kb_id: str, switch_id: str, services: Services, principal: Principal
    ) -> Envelope[SwitchInfo]:
        principal.require_kb(kb_id)
        return ok(await services.switches.get(principal.workspace_id, kb_id, switch_id))

    @post("/index-switches/{switch_id:str}/swap", opt=EDITOR, status_code=200, summary="Make a ready switch live")
    async def swap(self, kb_id: str, switch_id: str, services: Services, principal: Principal) -> Envelope[SwitchInfo]:
        principal.require_kb(kb_id)
        return ok(await services.switches.swap(principal.workspace_id, kb_id, switch_id), "Swapped")

    @post("/index-switches/{switch_id:str}/cancel", opt=EDITOR, status_code=200, summary="Cancel a switch")
    async def cancel(
        self, kb_id: str, switch_id: str, services: Services, principal: Principal
    ) -> Envelope[SwitchInfo]:
        principal.require_kb(kb_id)
        return ok(await services.switches.cancel(principal.workspace_id, kb_id, switch_id), "Switch cancelled")


@get("/api/v1/embedders", opt=VIEWER, tags=["knowledge"], summary="The embedders a knowledge base may switch to")
async def list_embedders(services: Services) -> Envelope[list[str]]:
    return ok(services.indexes.embedders.names())


INDEX_HANDLERS: list[Any] = [IndexController, list_embedders]

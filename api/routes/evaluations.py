"""Golden sets and evaluations of a knowledge base. Handlers parse, call one service, return."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import UploadFile
from msgspec import Meta

from api.auth import EDITOR, VIEWER, refuse_nul
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.common import Limit, PageNo
from api.schemas import Body, Description, Id, Name
from api.services.evaluations import DEFAULT_RECALL_K, EvaluationInfo, GoldenSetInfo
from api.services.identity import Principal
from engine.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from engine.evaluation import GoldenQuery, parse_golden_items
from engine.evaluation.golden import MAX_JUDGMENTS, MAX_QUERIES

MAX_GOLDEN_FILE_BYTES = 1024 * 1024  # the app-wide body limit (api.app.JSON_BODY_LIMIT) applies first
Ref = Annotated[str, Meta(min_length=1, max_length=255)]
Grade = Annotated[int, Meta(ge=0, le=100)]
Judgments = Annotated[list[Ref], Meta(max_length=MAX_JUDGMENTS)] | Annotated[
    dict[Ref, Grade], Meta(max_length=MAX_JUDGMENTS)
]
Mode = Literal["dense", "sparse", "hybrid", "hybrid_rerank"]


class GoldenQueryBody(Body):
    """A judged query: the relevant ``files`` (names or ids) or ``chunks`` (ids), as a list (grade 1 each) or an
    object of reference -> grade (0-100; nDCG's gain)."""

    query: Annotated[str, Meta(min_length=1, max_length=4000)]
    id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    files: Judgments | None = None
    chunks: Judgments | None = None


Queries = Annotated[list[GoldenQueryBody], Meta(min_length=1, max_length=MAX_QUERIES)]


class GoldenSetCreate(Body):
    name: Name
    queries: Queries
    description: Description = ""


class GoldenSetUpdate(Body):
    name: Name | None = None
    description: Description | None = None
    queries: Queries | None = None  # replaces every query


class EvaluationCreate(Body):
    """Run a stored golden set (``golden_set_id``) or inline ``queries``; ``modes`` defaults to every mode."""

    golden_set_id: Id | None = None
    queries: Queries | None = None
    modes: Annotated[list[Mode], Meta(min_length=1, max_length=4)] | None = None
    recall_k: Annotated[int, Meta(ge=1, le=1000)] = DEFAULT_RECALL_K
    label: Annotated[str, Meta(max_length=500)] = ""  # what changed, e.g. "chunk_tokens 300"


def golden(queries: list[GoldenQueryBody]) -> list[GoldenQuery]:
    items = [{k: v for k, v in msgspec.structs.asdict(q).items() if v is not None} for q in queries]
    return parse_golden_items(items)


class GoldenSetController(Controller):
    path = "/api/v1/knowledge-bases/{kb_id:str}/golden-sets"
    tags = ["evaluation"]

    @post("/", opt=EDITOR, status_code=201, summary="Create a golden set (queries with graded relevant files)")
    async def create_golden_set(
        self, kb_id: str, data: GoldenSetCreate, services: Services, principal: Principal
    ) -> Envelope[GoldenSetInfo]:
        principal.require_kb(kb_id)
        info = await services.evaluations.create_golden_set(
            principal.workspace_id, kb_id, name=data.name, description=data.description, queries=golden(data.queries),
            actor=principal.user_id,
        )  # fmt: skip
        return ok(info, "Golden set created successfully")

    @post(
        "/upload",
        opt=EDITOR,
        status_code=201,
        summary="Upload a golden set as a JSON or JSONL file (multipart 'file', 'name', optional 'description')",
    )
    async def upload_golden_set(
        self, kb_id: str, request: Request[Any, Any, Any], services: Services, principal: Principal
    ) -> Envelope[GoldenSetInfo]:
        principal.require_kb(kb_id)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise UnsupportedMediaType("send the golden set as multipart/form-data with the file in a field 'file'")
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("send the golden set in a multipart field named 'file'")
        try:
            data = await upload.read(MAX_GOLDEN_FILE_BYTES + 1)
        finally:
            await upload.close()
        if len(data) > MAX_GOLDEN_FILE_BYTES:
            raise PayloadTooLarge(f"a golden set file holds at most {MAX_GOLDEN_FILE_BYTES} bytes")
        name = form.get("name") or (upload.filename or "").rsplit(".", 1)[0]
        description = form.get("description") or ""
        if not isinstance(name, str) or not isinstance(description, str) or len(description) > 10_000:
            raise InvalidInput("'name' and 'description' must be text")
        for text in (name, description, data):  # form fields and the file skip the JSON body's check
            refuse_nul(text)
        info = await services.evaluations.upload_golden_set(
            principal.workspace_id, kb_id, name=name, data=data, description=description, actor=principal.user_id
        )
        return ok(info, "Golden set created successfully")

    @get("/", opt=VIEWER, summary="List the knowledge base's golden sets")
    async def list_golden_sets(
        self, kb_id: str, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[GoldenSetInfo]:
        principal.require_kb(kb_id)
        result = await services.evaluations.list_golden_sets(principal.workspace_id, kb_id, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/{golden_set_id:str}", opt=VIEWER, summary="Get a golden set with its queries")
    async def get_golden_set(
        self, kb_id: str, golden_set_id: str, services: Services, principal: Principal
    ) -> Envelope[GoldenSetInfo]:
        principal.require_kb(kb_id)
        return ok(await services.evaluations.get_golden_set(principal.workspace_id, kb_id, golden_set_id))

    @patch("/{golden_set_id:str}", opt=EDITOR, summary="Rename a golden set or replace its queries")
    async def update_golden_set(
        self, kb_id: str, golden_set_id: str, data: GoldenSetUpdate, services: Services, principal: Principal
    ) -> Envelope[GoldenSetInfo]:
        principal.require_kb(kb_id)
        info = await services.evaluations.update_golden_set(
            principal.workspace_id, kb_id, golden_set_id, name=data.name, description=data.description,
            queries=golden(data.queries) if data.queries is not None else None,
        )  # fmt: skip
        return ok(info, "Golden set updated")

    @delete("/{golden_set_id:str}", opt=EDITOR, status_code=200, summary="Delete a golden set (its evaluations stay)")
    async def delete_golden_set(
        self, kb_id: str, golden_set_id: str, services: Services, principal: Principal
    ) -> Envelope[None]:
        principal.require_kb(kb_id)
        await services.evaluations.delete_golden_set(principal.workspace_id, kb_id, golden_set_id)
        return ok(None, "Golden set deleted")


class EvaluationController(Controller):
    path = "/api/v1/knowledge-bases/{kb_id:str}/evaluations"
    tags = ["evaluation"]

    @post(
        "/",
        opt=EDITOR,
        status_code=201,
        summary="Evaluate search on this knowledge base in every mode (nDCG@10, recall@k, MRR@10, latency)",
        description=(
            "Runs the golden set's queries one at a time in each mode (dense, sparse, hybrid, and hybrid_rerank "
            "when a reranker is configured) and answers once done, with the worst queries per mode and the change "
            "since the previous evaluation of the same golden set. The result is kept in the history."
        ),
    )
    async def create_evaluation(
        self, kb_id: str, data: EvaluationCreate, services: Services, principal: Principal
    ) -> Envelope[EvaluationInfo]:
        principal.require_kb(kb_id)
        info = await services.evaluations.run(
            principal.workspace_id, kb_id, golden_set_id=data.golden_set_id,
            queries=golden(data.queries) if data.queries is not None else None, golden_set_name="inline",
            modes=data.modes, recall_k=data.recall_k, label=data.label, actor=principal.user_id,
        )  # fmt: skip
        return ok(info, "Evaluation finished")

    @get("/", opt=VIEWER, summary="The knowledge base's evaluations, newest first")
    async def list_evaluations(
        self, kb_id: str, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[EvaluationInfo]:
        principal.require_kb(kb_id)
        result = await services.evaluations.list_evaluations(principal.workspace_id, kb_id, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/{evaluation_id:str}", opt=VIEWER, summary="Get an evaluation (with the change since the previous one)")
    async def get_evaluation(
        self, kb_id: str, evaluation_id: str, services: Services, principal: Principal
    ) -> Envelope[EvaluationInfo]:
        principal.require_kb(kb_id)
        return ok(await services.evaluations.get(principal.workspace_id, kb_id, evaluation_id))


EVALUATION_HANDLERS = [GoldenSetController, EvaluationController]

"""Knowledge bases and their files. Handlers parse, call one service, return."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, BinaryIO, cast

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import UploadFile
from litestar.params import Parameter
from litestar.response import File as FileResponse

from api.auth import EDITOR, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.previews import preview_uploads
from api.schemas import FileUpdate, KnowledgeBaseCreate, KnowledgeBaseUpdate, UploadResult
from api.services.identity import Principal
from engine.errors import EngineError, InvalidInput, NotFound, UnsupportedMediaType
from engine.metadata import clean_metadata
from ingest.views import FileInfo, KnowledgeBaseInfo

PageNo = Annotated[int, Parameter(ge=1, le=1_000_000, query="page")]
Limit = Annotated[int, Parameter(ge=1, le=100, query="limit")]
UPLOAD_OVERHEAD = 1024 * 1024  # multipart framing and form fields on top of the file limit
MAX_FILES_PER_UPLOAD = 100
MAX_METADATA_FIELD = 16_384  # characters of the JSON text; engine.metadata bounds keys and values
# ?wait=true: answer once the files are ready or failed, or after wait_s seconds with their status then
MAX_WAIT_S = 120
DEFAULT_WAIT_S = 60
FINISHED = ("ready", "failed")
WaitS = Annotated[float, Parameter(query="wait_s", gt=0, le=MAX_WAIT_S)]


class KnowledgeBaseController(Controller):
    path = "/api/v1/knowledge-bases"
    tags = ["knowledge"]

    @post("/", opt=EDITOR, summary="Create a knowledge base")
    async def create(
        self, data: KnowledgeBaseCreate, services: Services, principal: Principal
    ) -> Envelope[KnowledgeBaseInfo]:
        kb = await services.knowledge.create_kb(principal.workspace_id, data.name, data.description)
        return ok(kb, "Knowledge base created successfully")

    @get("/", opt=VIEWER, summary="List knowledge bases")
    async def list_kbs(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[KnowledgeBaseInfo]:
        result = await services.knowledge.list_kbs(
            principal.workspace_id, page=page, limit=limit, only=principal.kb_ids
        )
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/{kb_id:str}", opt=VIEWER, summary="Get a knowledge base")
    async def get_kb(self, kb_id: str, services: Services, principal: Principal) -> Envelope[KnowledgeBaseInfo]:
        principal.require_kb(kb_id)
        return ok(await services.knowledge.get_kb(principal.workspace_id, kb_id))

    @patch("/{kb_id:str}", opt=EDITOR, summary="Rename or describe a knowledge base")
    async def update(
        self, kb_id: str, data: KnowledgeBaseUpdate, services: Services, principal: Principal
    ) -> Envelope[KnowledgeBaseInfo]:
        principal.require_kb(kb_id)
        kb = await services.knowledge.update_kb(
            principal.workspace_id, kb_id, name=data.name, description=data.description
        )
        return ok(kb, "Knowledge base updated")

    @delete("/{kb_id:str}", opt=EDITOR, status_code=200, summary="Delete a knowledge base with all its files")
    async def remove(self, kb_id: str, services: Services, principal: Principal) -> Envelope[None]:
        principal.require_kb(kb_id)
        await services.knowledge.delete_kb(principal.workspace_id, kb_id)
        return ok(None, "Knowledge base deleted")


class FileController(Controller):
    path = "/api/v1/knowledge-bases/{kb_id:str}/files"
    tags = ["files"]

    # the body limit (RAGLINE_MAX_UPLOAD_BYTES) is set on the router that mounts this controller
    @post(
        "/",
        opt=EDITOR,
        status_code=201,
        summary="Upload files (multipart field 'file', repeatable; optional 'tags' and 'metadata' (a JSON object))",
        description=(
            "Stores the files and queues them for ingestion. With `wait=true` the answer comes once every file is "
            f"ready or failed, or after `wait_s` seconds (default {DEFAULT_WAIT_S}, at most {MAX_WAIT_S}) with "
            "the status it has then. With `dry_run=true` nothing is stored: the answer (200) says per file what an "
            "ingest would make of it (pages, chunks, tokens, the estimated embedding time on this machine from a "
            "measured throughput, the warnings, or why it would fail)."
        ),
    )
    async def upload(
        self, kb_id: str, request: Request[Any, Any, Any], services: Services, principal: Principal,
        wait: Annotated[bool, Parameter(query="wait")] = False, wait_s: WaitS = DEFAULT_WAIT_S,
        dry_run: Annotated[bool, Parameter(query="dry_run")] = False,
    ) -> Envelope[Any]:  # fmt: skip
        principal.require_kb(kb_id)
        form = await _read_form(request)
        uploads = [v for k, v in form.multi_items() if isinstance(v, UploadFile) and k in ("file", "files")]
        if not uploads:
            raise InvalidInput("send the file in a multipart/form-data field named 'file'")
        if len(uploads) > MAX_FILES_PER_UPLOAD:
            raise InvalidInput(f"at most {MAX_FILES_PER_UPLOAD} files per request")
        if dry_run:  # parse and chunk only: nothing is embedded, stored or queued (ingest.preview)
            return cast(Envelope[Any], await preview_uploads(services, principal, kb_id, uploads))
        tags = [t for k, v in form.multi_items() if k == "tags" and isinstance(v, str) for t in v.split(",")]
        metadata = _form_metadata(form.get("metadata"))
        if len(uploads) == 1:
            info = await _store_one(services, principal, kb_id, uploads[0], tags, metadata)
            if wait:
                (info,) = await _wait_finished(services, principal.workspace_id, [info], wait_s)
                return ok(info, _finished_message(info, wait_s))
            return ok(info, "File already present" if info.duplicate else "File queued for ingestion")
        results = []
        for upload in uploads:
            try:
                results.append(
                    UploadResult(
                        name=upload.filename,
                        file=await _store_one(services, principal, kb_id, upload, tags, metadata),
                    )
                )
            except EngineError as exc:
                results.append(UploadResult(name=upload.filename, error=exc.message, code=exc.code))
        if wait:
            stored = [cast(FileInfo, r.file) for r in results if r.file is not None]
            finished = await _wait_finished(services, principal.workspace_id, stored, wait_s)
            done = iter(finished)
            results = [UploadResult(name=r.name, file=next(done)) if r.file is not None else r for r in results]
            ready = sum(f.status == "ready" for f in finished)
            return ok(results, f"{ready} of {len(results)} files ready")
        return ok(results, f"{sum(r.file is not None for r in results)} of {len(results)} files queued")

    @get("/", opt=VIEWER, summary="List files with their ingest status")
    async def list_files(
        self,
        kb_id: str,
        services: Services,
        principal: Principal,
        page: PageNo = 1,
        limit: Limit = 20,
        status: Annotated[str | None, Parameter(query="status", max_length=16)] = None,
    ) -> ListEnvelope[FileInfo]:
        principal.require_kb(kb_id)
        result = await services.knowledge.list_files(
            principal.workspace_id, kb_id, page=page, limit=limit, status=status
        )
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/{file_id:str}", opt=VIEWER, summary="Get a file with status and progress")
    async def get_file(self, kb_id: str, file_id: str, services: Services, principal: Principal) -> Envelope[FileInfo]:
        principal.require_kb(kb_id)
        return ok(await services.knowledge.get_file(principal.workspace_id, file_id, kb_id))

    @get("/{file_id:str}/download", opt=VIEWER, summary="Download the original file (as an attachment)")
    async def download(self, kb_id: str, file_id: str, services: Services, principal: Principal) -> FileResponse:
        principal.require_kb(kb_id)
        info, path = await services.knowledge.file_path(principal.workspace_id, file_id, kb_id)
        return FileResponse(
            path=path,
            filename=info.name,
            media_type="application/octet-stream",
            content_disposition_type="attachment",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    @patch("/{file_id:str}", opt=EDITOR, summary="Replace a file's tags and/or metadata (no re-embedding)")
    async def update_file(
        self, kb_id: str, file_id: str, data: FileUpdate, services: Services, principal: Principal
    ) -> Envelope[FileInfo]:
        principal.require_kb(kb_id)
        info = await services.knowledge.update_file(
            principal.workspace_id, file_id, kb_id, tags=data.tags, metadata=data.metadata
        )
        return ok(info, "File updated")

    @post("/{file_id:str}/reprocess", opt=EDITOR, status_code=202, summary="Queue a file for ingestion again")
    async def reprocess(self, kb_id: str, file_id: str, services: Services, principal: Principal) -> Envelope[FileInfo]:
        principal.require_kb(kb_id)
        await services.knowledge.get_file(principal.workspace_id, file_id, kb_id)
        return ok(await services.knowledge.requeue(principal.workspace_id, file_id), "File queued")

    @delete("/{file_id:str}", opt=EDITOR, status_code=200, summary="Delete a file, its chunks and its original")
    async def remove(self, kb_id: str, file_id: str, services: Services, principal: Principal) -> Envelope[None]:
        principal.require_kb(kb_id)
        await services.knowledge.delete_file(principal.workspace_id, file_id, kb_id)
        return ok(None, "File deleted")


async def _wait_finished(services: Services, workspace_id: str, files: list[FileInfo], wait_s: float) -> list[FileInfo]:
    """The files once each is ready or failed, or as they are when ``wait_s`` has passed."""
    deadline = time.monotonic() + wait_s
    current, pause = list(files), 0.05
    while any(f.status not in FINISHED for f in current):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, 0.5)
        current = [f if f.status in FINISHED else await _refreshed(services, workspace_id, f) for f in current]
    return current


async def _refreshed(services: Services, workspace_id: str, info: FileInfo) -> FileInfo:
    try:
        return await services.knowledge.get_file(workspace_id, info.id)
    except NotFound:  # deleted while we waited: its last known state
        return info


def _finished_message(info: FileInfo, wait_s: float) -> str:
    if info.status == "ready":
        return f"File ready ({info.chunks_done} chunks)"
    if info.status == "failed":
        return f"File failed: {info.error or 'unknown error'}"
    return f"File still {info.status} after {wait_s:g} s ({round(100 * info.progress)} %)"


async def _read_form(request: Request[Any, Any, Any]) -> Any:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedMediaType("uploads must be multipart/form-data with the file in a field named 'file'")
    return await request.form()


def _form_metadata(value: object) -> dict[str, Any] | None:
    """The upload's 'metadata' form field: a JSON object (see ``engine.metadata``), or absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_METADATA_FIELD:
        raise InvalidInput(f"'metadata' must be a JSON object of at most {MAX_METADATA_FIELD} characters")
    try:
        decoded = msgspec.json.decode(value)
    except (msgspec.DecodeError, RecursionError) as exc:  # msgspec recurses per nesting level
        raise InvalidInput(f"'metadata' is not valid JSON: {exc}") from exc
    return clean_metadata(decoded)  # checked once for the whole request, before any file is stored


async def _store_one(
    services: Services,
    principal: Principal,
    kb_id: str,
    upload: UploadFile,
    tags: list[str],
    metadata: dict[str, Any] | None,
) -> FileInfo:
    try:
        return await services.knowledge.add_file(
            principal.workspace_id,
            kb_id,
            filename=upload.filename or "unnamed",
            source=cast(BinaryIO, upload.file),
            tags=tags,
            metadata=metadata,
            declared_mime=upload.content_type,
        )
    finally:
        await upload.close()

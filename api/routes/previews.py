"""``POST /knowledge-bases/{id}/files?dry_run=true``: what an upload would become, with nothing stored."""

from __future__ import annotations

from typing import Any, BinaryIO, cast

from litestar import Response
from litestar.datastructures import UploadFile

from api.container import Services
from api.envelope import ok
from api.services.identity import Principal
from engine.errors import EngineError
from ingest.preview import PreviewInfo


async def preview_uploads(
    services: Services, principal: Principal, kb_id: str, uploads: list[UploadFile]
) -> Response[Any]:
    """One preview (or, for several files, one per file with the refused ones' errors), answered 200."""
    if len(uploads) == 1:
        info = await _preview_one(services, principal, kb_id, uploads[0])
        return Response(ok(info, _message(info)), status_code=200)
    results: list[dict[str, Any]] = []
    for upload in uploads:
        try:
            results.append({"name": upload.filename, "preview": await _preview_one(services, principal, kb_id, upload)})
        except EngineError as exc:
            results.append({"name": upload.filename, "error": exc.message, "code": exc.code})
    return Response(ok(results, f"previewed {len(results)} files (nothing stored)"), status_code=200)


async def _preview_one(services: Services, principal: Principal, kb_id: str, upload: UploadFile) -> PreviewInfo:
    try:
        return await services.previews.preview(
            principal.workspace_id, kb_id, filename=upload.filename or "unnamed", source=cast(BinaryIO, upload.file)
        )
    finally:
        await upload.close()


def _message(info: PreviewInfo) -> str:
    if info.would_fail:
        return f"Dry run: the ingest would fail: {info.would_fail}"
    return f"Dry run: {info.chunks} chunks, ~{info.embed_seconds} s to embed (nothing stored)"

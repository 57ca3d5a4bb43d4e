"""OpenAI-compatible endpoints under ``/v1`` (no ``/api`` prefix: clients use ``base_url="http://host/v1"``).

``GET /v1/models`` and ``POST /v1/chat/completions`` speak OpenAI's wire format, errors included: a router-scoped
set of exception handlers answers every error of these routes (the guard's 401 too) as
``{"error": {"message", "type", "code", "param"}}`` instead of the Ragline envelope. They are left out of the
OpenAPI document (whose errors are all the envelope); OpenAI's API reference describes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.response import Stream

from api.auth import VIEWER
from api.container import Services
from api.errors import EXCEPTION_HANDLERS
from api.services.identity import Principal
from api.services.openai_compat import (
    ChatCompletionRequest,
    OpenAICompatService,
    OpenAIError,
    check_request,
    error_type,
)
from api.services.openai_compat_shapes import CompletionShape
from api.sse import with_idle_ticks

_encoder = msgspec.json.Encoder()
# Ragline error codes -> OpenAI's names for the same thing
_CODES = {"unauthorized": "invalid_api_key", "rate_limited": "rate_limit_exceeded", "invalid_input": "invalid_value"}
_NO_RETRY_STATUSES = {409}  # the openai client retries 409; a conflict (an inactive agent) does not go away


def compat(services: Services) -> OpenAICompatService:
    return OpenAICompatService(sessions=services.sessions, runs=services.runs, manager=services.run_manager)


@get("/models", opt=VIEWER, summary="OpenAI-compatible: what `model` may name")
async def list_models(services: Services, principal: Principal) -> dict[str, Any]:
    entries = await compat(services).models(principal)
    return {"object": "list", "data": msgspec.to_builtins(entries)}


@post("/chat/completions", opt=VIEWER, status_code=200, summary="OpenAI-compatible chat completion")
async def chat_completions(data: ChatCompletionRequest, services: Services, principal: Principal) -> Response[Any]:
    chat = check_request(data)
    service = compat(services)
    target = await service.resolve(principal, data.model)
    run_id = await service.start(principal, target, chat, temperature=data.temperature)
    shape = CompletionShape(run_id, target.id)
    events = services.run_manager.subscribe(run_id, 0, workspace_id=principal.workspace_id)
    if not data.stream:
        return Response(await shape.collect(events), headers={"X-Ragline-Run-Id": run_id})
    include_usage = bool(data.stream_options and data.stream_options.include_usage)
    objects = shape.chunks(with_idle_ticks(events, services.settings.sse_ping_interval_s), include_usage=include_usage)
    return Stream(
        sse_frames(objects), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Ragline-Run-Id": run_id},
    )  # fmt: skip


async def sse_frames(objects: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """``data: {json}`` frames, ``: ping`` comments for keepalives, ``data: [DONE]`` after a successful end."""
    failed = False
    async for obj in objects:
        if obj is None:
            yield b": ping\n\n"
            continue
        failed = "error" in obj
        yield b"data: " + _encoder.encode(obj) + b"\n\n"
    if not failed:
        yield b"data: [DONE]\n\n"


# -- errors in OpenAI's shape ----------------------------------------------------------------------------------


def openai_error_handler(_: Request[Any, Any, Any], exc: OpenAIError) -> Response[Any]:
    return Response(exc.body(), status_code=exc.status, headers=exc.headers or None)


def _in_openai_shape(handler: Callable[[Request[Any, Any, Any], Any], Response[Any]]) -> Any:
    """The app's handler for the same exception (status, code, message, headers), answered in OpenAI's shape."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        answer = handler(request, exc)
        body = answer.content if isinstance(answer.content, dict) else {}
        status = answer.status_code or 500
        code = str(body.get("code") or "error")
        if status == 422:  # OpenAI answers an invalid request 400 (openai.BadRequestError)
            status, code = 400, "invalid_value" if code == "invalid_input" else code
        code = _CODES.get(code, code)
        headers = {k: v for k, v in answer.headers.items() if k.lower() in ("retry-after", "www-authenticate")}
        if status in _NO_RETRY_STATUSES:
            headers["x-should-retry"] = "false"
        message = str(body.get("message") or body.get("error") or "request failed")
        error = OpenAIError(status, message, code=code, type=error_type(status), headers=headers)
        return openai_error_handler(request, error)

    return handle


def openai_router() -> Router:
    """A fresh ``/v1`` router (one per app) with the OpenAI-shaped exception handlers."""
    handlers: dict[type[Exception] | int, Any] = {key: _in_openai_shape(h) for key, h in EXCEPTION_HANDLERS.items()}
    handlers[OpenAIError] = openai_error_handler
    return Router(
        "/v1", route_handlers=[list_models, chat_completions], exception_handlers=handlers, include_in_schema=False,
        tags=["openai"],
    )  # fmt: skip

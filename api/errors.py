"""Exception handlers: engine errors and framework errors become the error envelope; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException

from api.envelope import error_body
from api.services.identity import NotAuthenticated
from engine.errors import (
    BlockedDestination,
    Conflict,
    EngineError,
    InvalidInput,
    ModelError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    UnsupportedMediaType,
)

log = logging.getLogger("ragline.api")

_STATUS: dict[type[EngineError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    PermissionDenied: 403,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    RateLimited: 429,
    ModelError: 502,
    BlockedDestination: 422,
}


def _response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, *, error: str | None = None
) -> Response[Any]:
    return Response(content=error_body(status, code, message, error=error), status_code=status, headers=headers)


def engine_error_handler(_: Request[Any, Any, Any], exc: EngineError) -> Response[Any]:
    status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if isinstance(exc, RateLimited) else None
    return _response(status, exc.code, exc.message, headers, error=exc.summary[:200])


def not_authenticated_handler(_: Request[Any, Any, Any], __: Exception) -> Response[Any]:
    return _response(401, "unauthorized", "missing, invalid, expired or revoked API token",
                     {"WWW-Authenticate": "Bearer"})


def http_exception_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, NotAuthorizedException):
        return not_authenticated_handler(_, exc)
    message = exc.detail or "request failed"
    if isinstance(exc, ValidationException) and exc.extra:
        body_errors = [e for e in exc.extra if isinstance(e, dict) and e.get("source") == "body"]
        if body_errors and len(body_errors) == len(exc.extra):
            if any(e.get("message") == "'data'" for e in body_errors):  # Litestar's words for "no body"
                return _response(400, "bad_request", "a JSON request body is required")
            status = 422  # well-formed JSON that breaks the schema (unknown field, wrong type, out of range)
        details = "; ".join(
            f"{e.get('key', '')}: {e.get('message', '')}".strip(": ") for e in exc.extra if isinstance(e, dict)
        )
        message = f"{message}: {details}" if details else message
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
            415: "unsupported_media_type", 422: "invalid_input", 429: "rate_limited"}.get(status, "http_error")
    headers = dict(exc.headers or {}) if status in (405, 429) else None
    return _response(status, code, message[:2000], headers)


def recursion_handler(_: Request[Any, Any, Any], __: RecursionError) -> Response[Any]:
    return _response(400, "bad_request", "request body is nested too deeply")


def undecodable_body_handler(_: Request[Any, Any, Any], __: UnicodeDecodeError) -> Response[Any]:
    # Litestar lets invalid UTF-8 in a JSON body escape from its decoder; it is the client's error
    return _response(400, "bad_request", "request body is not valid UTF-8")


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _response(500, "internal_error", "internal server error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    EngineError: engine_error_handler,
    NotAuthenticated: not_authenticated_handler,
    HTTPException: http_exception_handler,
    RecursionError: recursion_handler,
    UnicodeDecodeError: undecodable_body_handler,
    Exception: internal_error_handler,
}

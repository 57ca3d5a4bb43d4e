"""Exception handlers: engine errors and framework errors become the error envelope; never a traceback."""

from __future__ import annotations

import errno
import logging
import os
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from sqlalchemy import exc as sa_exc

from api.envelope import error_body
from api.request_context import request_id_of
from api.services.identity import NotAuthenticated
from engine.db.session import database_fault
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
    StorageFull,
    Unavailable,
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
    Unavailable: 503,
    StorageFull: 507,
}
_STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _response(
    request: Request[Any, Any, Any], status: int, code: str, message: str, headers: dict[str, str] | None = None,
    *, error: str | None = None,
) -> Response[Any]:  # fmt: skip
    body = error_body(status, code, message, error=error, request_id=request_id_of(request.scope))
    return Response(content=body, status_code=status, headers=headers)


def engine_error_handler(request: Request[Any, Any, Any], exc: EngineError) -> Response[Any]:
    status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
    retry_after = exc.retry_after if isinstance(exc, (RateLimited, Unavailable)) else None
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return _response(request, status, exc.code, exc.message, headers, error=exc.summary[:200])


def not_authenticated_handler(request: Request[Any, Any, Any], __: Exception) -> Response[Any]:
    return _response(
        request, 401, "unauthorized", "missing, invalid, expired or revoked API token", {"WWW-Authenticate": "Bearer"}
    )


def database_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A locked, unreachable or exhausted database is a 503 with ``Retry-After`` (its disk full: 507); any
    other database error is a bug (500)."""
    fault = database_fault(exc)
    if fault is None:
        return internal_error_handler(request, exc)
    reason = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc  # never the statement or its parameters
    log.warning("%s on %s %s: %s: %s", fault.code, request.method, request.url.path, type(reason).__name__, reason)
    return engine_error_handler(request, fault)


def os_error_handler(request: Request[Any, Any, Any], exc: OSError) -> Response[Any]:
    """No space left (disk, quota or file-size limit) anywhere while handling a request is a 507, not a 500."""
    if exc.errno not in _STORAGE_FULL_ERRNOS:
        return internal_error_handler(request, exc)
    log.warning("storage full on %s %s: %s", request.method, request.url.path, exc)
    reason = os.strerror(exc.errno or 0).lower()
    return engine_error_handler(request, StorageFull(f"not enough storage space to handle the request ({reason})"))


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, NotAuthorizedException):
        return not_authenticated_handler(request, exc)
    message = exc.detail or "request failed"
    if isinstance(exc, ValidationException) and exc.extra:
        body_errors = [e for e in exc.extra if isinstance(e, dict) and e.get("source") == "body"]
        if body_errors and len(body_errors) == len(exc.extra):
            if any(e.get("message") == "'data'" for e in body_errors):  # Litestar's words for "no body"
                return _response(request, 400, "bad_request", "a JSON request body is required")
            status = 422  # well-formed JSON that breaks the schema (unknown field, wrong type, out of range)
        details = "; ".join(
            f"{e.get('key', '')}: {e.get('message', '')}".strip(": ") for e in exc.extra if isinstance(e, dict)
        )
        message = f"{message}: {details}" if details else message
    code = {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
        422: "invalid_input",
        429: "rate_limited",
    }.get(status, "http_error")
    headers = dict(exc.headers or {}) if status in (405, 429) else None
    return _response(request, status, code, message[:2000], headers)


def recursion_handler(request: Request[Any, Any, Any], __: RecursionError) -> Response[Any]:
    return _response(request, 400, "bad_request", "request body is nested too deeply")


def undecodable_body_handler(request: Request[Any, Any, Any], __: UnicodeDecodeError) -> Response[Any]:
    # Litestar lets invalid UTF-8 in a JSON body escape from its decoder; it is the client's error
    return _response(request, 400, "bad_request", "request body is not valid UTF-8")


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _response(request, 500, "internal_error", "internal server error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    EngineError: engine_error_handler,
    NotAuthenticated: not_authenticated_handler,
    HTTPException: http_exception_handler,
    RecursionError: recursion_handler,
    UnicodeDecodeError: undecodable_body_handler,
    sa_exc.DBAPIError: database_error_handler,
    sa_exc.TimeoutError: database_error_handler,
    OSError: os_error_handler,
    Exception: internal_error_handler,
}

"""The response envelope: ``{data, message}``, lists add ``pagination``, errors
``{data: null, error, message, code, request_id}``."""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

import msgspec

from api.request_context import current_request_id

T = TypeVar("T")


class Pagination(msgspec.Struct, frozen=True):
    page: int
    limit: int
    total: int
    total_pages: int


class Envelope(msgspec.Struct, Generic[T], frozen=True):
    data: T
    message: str = ""


class ListEnvelope(msgspec.Struct, Generic[T], frozen=True):
    data: list[T]
    pagination: Pagination
    message: str = ""


class ErrorEnvelope(msgspec.Struct, frozen=True):
    error: str
    message: str
    code: str
    data: None = None
    request_id: str | None = None


def ok(data: T, message: str = "") -> Envelope[T]:
    return Envelope(data=data, message=message)


def page_of(items: list[T], *, page: int, limit: int, total: int, message: str = "") -> ListEnvelope[T]:
    return ListEnvelope(
        data=items,
        pagination=Pagination(
            page=page, limit=limit, total=total, total_pages=math.ceil(total / limit) if limit else 0
        ),
        message=message,
    )


def error_body(
    status: int, code: str, message: str, *, error: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """``error``: what was refused, in a few words ("Agent not found"; default: the HTTP status phrase);
    ``message``: the longer explanation; ``code``: the stable machine-readable kind; ``request_id``: the request's
    id (``X-Request-ID``; default: the request being handled)."""
    from http import HTTPStatus

    return {
        "data": None, "error": error or HTTPStatus(status).phrase, "message": message, "code": code,
        "request_id": request_id or current_request_id(),
    }  # fmt: skip

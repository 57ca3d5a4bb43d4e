"""Authentication and authorisation for every route, deny by default.

Each route declares ``opt={"role": "viewer" | "editor" | "admin"}`` or ``opt={"public": True}``.
The app-wide guard resolves the token (``Authorization: Bearer``, ``X-API-Key`` or ``X-API-Token``), the workspace
(``X-Workspace-ID`` selects among the caller's workspaces), checks the role and the rate limit,
and leaves the ``Principal`` on ``connection.state`` for the ``principal`` dependency.
"""

from __future__ import annotations

import re
import time
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException
from litestar.handlers.base import BaseRouteHandler

from api.audit import open_audit_scope
from api.request_context import current_request_id
from api.services.identity import NotAuthenticated, Principal
from engine.errors import InvalidInput, PermissionDenied, RateLimited, UnsupportedMediaType

PUBLIC = {"public": True}
VIEWER = {"role": "viewer"}
EDITOR = {"role": "editor"}
ADMIN = {"role": "admin"}


def presented_secret(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    # X-API-Key (PromptRails) and X-API-Token (Prodgy) carry the same token
    return connection.headers.get("x-api-key") or connection.headers.get("x-api-token") or None


class TokenBucket:
    """Per-token request budget: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(1, per_minute))
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """Consume one request; returns 0 when allowed, else seconds until one is available."""
        now = time.monotonic()
        tokens, last = self._state.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._state[key] = (tokens, now)
            return (1.0 - tokens) / self.rate if self.rate else 60.0
        self._state[key] = (tokens - 1.0, now)
        return 0.0


def refuse_nul_in_url(scope: Any) -> None:
    """No NUL in a path or query parameter (400): PostgreSQL cannot take one in a text parameter, so a lookup by such
    a value failed there (a 500) where SQLite found nothing, and log sinks mangle them."""
    query: bytes = scope.get("query_string", b"")
    if "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query:
        raise ClientException("paths and query parameters must not contain NUL characters (%00)")


async def access_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    refuse_nul_in_url(connection.scope)
    if handler.opt.get("public"):
        return
    needed = handler.opt.get("role", "admin")  # a route that forgot to declare a role is admin-only
    secret = presented_secret(connection)
    if not secret:
        raise NotAuthenticated()
    # a route addressing a workspace (/workspaces/{workspace_id}/...) is judged by the role held there
    workspace_id = connection.path_params.get("workspace_id") or connection.headers.get("x-workspace-id") or None
    # a few seconds' cache in front of the database; any write to tokens, members or users empties it
    principal = await connection.app.state.services.principals.authenticate(secret, workspace_id)
    wait = connection.app.state.services.request_limiter.take(principal.token_id)
    if wait:
        raise RateLimited("rate limit exceeded for this token", retry_after=wait)
    if not principal.has_role(needed):
        raise PermissionDenied(f"this action needs the {needed} role")
    connection.state.principal = principal
    method = connection.scope.get("method", "GET")  # a WebSocket handshake writes nothing
    open_audit_scope(str(method), str(connection.scope.get("path_template", "")), principal, current_request_id())
    if isinstance(connection, Request) and takes_json_body(handler):
        await check_json_body(connection)


# a \u0000 escape that is not itself escaped (an odd number of backslashes before the "u")
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def takes_json_body(handler: BaseRouteHandler) -> bool:
    """Whether the handler decodes a JSON ``data`` body (multipart and raw-body handlers do not)."""
    field = getattr(handler, "parsed_fn_signature", None)
    data = field.parameters.get("data") if field is not None else None
    if data is None:
        return False
    media = getattr(data.kwarg_definition, "media_type", RequestEncodingType.JSON)
    return bool(media == RequestEncodingType.JSON)


async def check_json_body(request: Request[Any, Any, Any]) -> None:
    """JSON routes take ``application/json`` in UTF-8 without NUL characters (415 / 400 otherwise).

    Litestar would parse any content type as JSON, pass invalid UTF-8 on as a ``UnicodeDecodeError``
    (a 500) and accept ``\\u0000`` in strings, which PostgreSQL and many log sinks cannot store.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType("send the request body as application/json")
    body = await request.body()  # cached on the request: the handler's decoder reuses it
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise ClientException("the request body is not valid UTF-8") from None  # 400: unreadable, like bad JSON
    refuse_nul(body)


def refuse_nul(text: bytes | str) -> None:
    """No NUL character, raw or as a JSON ``\\u0000`` escape (422): PostgreSQL cannot store one in text."""
    data = text.encode() if isinstance(text, str) else text
    if b"\x00" in data or _NUL_ESCAPE.search(data):
        raise InvalidInput("strings must not contain NUL characters (\\u0000)")


def provide_principal(request: Any) -> Principal:
    principal: Principal = request.state.principal
    return principal

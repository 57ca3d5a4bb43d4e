"""Authentication and authorisation for every route, deny by default.

Each route declares ``opt={"role": "viewer" | "editor" | "admin"}`` or ``opt={"public": True}``.
The app-wide guard resolves the token (``Authorization: Bearer``, ``X-API-Key`` or ``X-API-Token``), the workspace
(``X-Workspace-ID`` selects among the caller's workspaces), checks the role and the rate limit,
and leaves the ``Principal`` on ``connection.state`` for the ``principal`` dependency.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException
from litestar.handlers.base import BaseRouteHandler
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import InstanceState, ORMExecuteState, Session, UOWTransaction

from api.audit import open_audit_scope
from api.request_context import current_request_id
from api.services.access import AccessService
from api.services.identity import NotAuthenticated, Principal, hash_secret
from engine.db.models import ApiToken, Membership, User, Workspace
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


async def access_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if handler.opt.get("public"):
        return
    needed = handler.opt.get("role", "admin")  # a route that forgot to declare a role is admin-only
    secret = presented_secret(connection)
    if not secret:
        raise NotAuthenticated()
    access: AccessService = connection.app.state.services.access
    # a route addressing a workspace (/workspaces/{workspace_id}/...) is judged by the role held there
    workspace_id = connection.path_params.get("workspace_id") or connection.headers.get("x-workspace-id") or None
    principal = await PRINCIPALS.authenticate(access, secret, workspace_id)
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


class PrincipalCache:
    """Resolved principals for a few seconds, so a request does not read the database to know its caller.

    Revocation still wins at once: any write to tokens, memberships, users or workspaces in this process (ORM
    flushes and bulk statements alike, see the listeners below) empties the cache when it commits, and a lookup
    that overlapped such a write is not cached. Another process's write (``ragline token create`` mints, it
    does not revoke) is seen within ``ttl_s``. An entry never outlives its token's expiry. Misses and refusals
    are not cached: an unknown token always asks the database.
    """

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._generation = 0
        self._lock = threading.Lock()
        # per AccessService (one per app): tests run apps on separate databases with the same bootstrap secret
        self._entries: weakref.WeakKeyDictionary[AccessService, dict[tuple[str, str | None], tuple[float, Principal]]]
        self._entries = weakref.WeakKeyDictionary()

    async def authenticate(self, access: AccessService, secret: str, workspace_id: str | None) -> Principal:
        key = (hash_secret(secret), workspace_id)
        entries = self._entries.get(access)
        hit = entries.get(key) if entries is not None else None
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        generation = self._generation
        principal = await access.authenticate(secret, workspace_id=workspace_id)
        async with access.sessions() as session:  # a miss only: at most once per ttl_s per token
            expires = await session.scalar(select(ApiToken.expires_at).where(ApiToken.id == principal.token_id))
        left = self.ttl_s if expires is None else min(self.ttl_s, expires - time.time())
        until = time.monotonic() + left
        with self._lock:
            if generation == self._generation:  # no auth write committed while we looked it up
                entries = self._entries.setdefault(access, {})
                if len(entries) >= self.max_entries:
                    entries.clear()
                entries[key] = (until, principal)
        return principal

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


PRINCIPALS = PrincipalCache()
_AUTH_ROWS = (ApiToken, Membership, User, Workspace)
_CHANGED = "ragline_auth_changed"


def _auth_rows_changed(session: Session) -> bool:
    for row in (*session.new, *session.deleted):
        if isinstance(row, _AUTH_ROWS):
            return True
    for row in session.dirty:
        if isinstance(row, _AUTH_ROWS):
            state: InstanceState[Any] = inspect(row)
            changed = {a.key for a in state.attrs if a.history.has_changes()}
            if changed - {"last_used_at", "updated_at"}:  # authenticate's own coarse usage stamp is not a change
                return True
    return False


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _flush: UOWTransaction) -> None:
    if _auth_rows_changed(session):
        session.info[_CHANGED] = True
        PRINCIPALS.invalidate()


@event.listens_for(Session, "do_orm_execute")
def _bulk_write(state: ORMExecuteState) -> None:
    mapper = state.bind_mapper
    if (state.is_update or state.is_delete) and mapper is not None and issubclass(mapper.class_, _AUTH_ROWS):
        state.session.info[_CHANGED] = True
        PRINCIPALS.invalidate()


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    # again after the commit: a lookup between the flush and the commit read the old rows and may have cached them
    if session.info.pop(_CHANGED, False):
        PRINCIPALS.invalidate()


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
    if b"\x00" in body or _NUL_ESCAPE.search(body):
        raise InvalidInput("strings must not contain NUL characters (\\u0000)")


def provide_principal(request: Any) -> Principal:
    principal: Principal = request.state.principal
    return principal

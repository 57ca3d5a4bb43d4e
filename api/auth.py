"""Authentication and authorisation for every route, deny by default.

Each route declares ``opt={"role": "viewer" | "editor" | "admin"}`` or ``opt={"public": True}``.
The app-wide guard resolves the token (``Authorization: Bearer`` or ``X-API-Key``), the workspace
(``X-Workspace-ID`` selects among the caller's workspaces), checks the role and the rate limit,
and leaves the ``Principal`` on ``connection.state`` for the ``principal`` dependency.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from api.services.access import AccessService, NotAuthenticated, Principal
from engine.errors import PermissionDenied, RateLimited

PUBLIC = {"public": True}
VIEWER = {"role": "viewer"}
EDITOR = {"role": "editor"}
ADMIN = {"role": "admin"}


def presented_secret(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return connection.headers.get("x-api-key") or None


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
    principal = await access.authenticate(secret, workspace_id=connection.headers.get("x-workspace-id") or None)
    bucket: TokenBucket = connection.app.state.rate_limiter
    wait = bucket.take(principal.token_id)
    if wait:
        raise RateLimited("rate limit exceeded for this token", retry_after=wait)
    if not principal.has_role(needed):
        raise PermissionDenied(f"this action needs the {needed} role")
    connection.state.principal = principal


def provide_principal(request: Any) -> Principal:
    principal: Principal = request.state.principal
    return principal

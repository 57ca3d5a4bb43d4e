"""Request ids: one per request, taken from ``X-Request-ID`` when the client sent a usable one (printable ASCII,
at most 128 characters) or made up (uuid4 hex), returned on every response, put into every error envelope and
onto every log line written while the request is handled.

Three parts share one value, kept in the ASGI scope's state so that they cannot disagree:

* ``RequestIdMiddleware`` (every route: handlers, the guard's 401s, exception handlers, SSE streams) sets the
  ``current_request_id`` context variable for as long as the request is handled, so log records carry it;
* ``add_request_id_header``, a ``before_send`` hook, adds the ``X-Request-ID`` header to every response, also the
  404/405 the router answers before any route (and any middleware) is chosen;
* ``RequestIdFilter`` stamps ``record.request_id`` (``-`` outside a request) for the log format; it is installed on
  the app's root handlers (``logging_config``) and on uvicorn's (``uvicorn_log_config``, access lines included).
"""

from __future__ import annotations

import copy
import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from litestar.enums import ScopeType
from litestar.logging.config import LoggingConfig
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
MAX_LENGTH = 128
NO_REQUEST = "-"
LOG_FORMAT = "%(levelname)s - %(asctime)s - %(name)s - %(module)s - [%(request_id)s] %(message)s"
_HEADER_KEY = HEADER.lower().encode("latin-1")
_STATE_KEY = "ragline.request_id"

_current: ContextVar[str | None] = ContextVar("ragline_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled in this context, or ``None`` outside a request."""
    return _current.get()


def usable(value: str) -> str | None:
    """A client's id, if it is 1 to 128 printable ASCII characters (surrounding blanks dropped)."""
    value = value.strip()
    if 0 < len(value) <= MAX_LENGTH and value.isascii() and value.isprintable():
        return value
    return None


def request_id_of(scope: Scope) -> str:
    """The request's id, decided once per request and remembered in the scope's state."""
    state: dict[str, Any] = scope.setdefault("state", {})
    known = state.get(_STATE_KEY)
    if isinstance(known, str):
        return known
    sent = next((v for k, v in scope.get("headers", ()) if k.lower() == _HEADER_KEY), None)
    chosen = (usable(sent.decode("latin-1")) if sent is not None else None) or uuid.uuid4().hex
    state[_STATE_KEY] = chosen
    return chosen


class RequestIdMiddleware(ASGIMiddleware):
    """Makes the request's id the current one while any route (guard and exception handlers included) runs."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        token = _current.set(request_id_of(scope))
        try:
            await next_app(scope, receive, send)
        finally:
            _current.reset(token)


async def add_request_id_header(message: Message, scope: Scope) -> None:
    """``before_send``: every HTTP response gets ``X-Request-ID`` (the router's own 404/405 too)."""
    if message["type"] != "http.response.start" or scope["type"] != ScopeType.HTTP:
        return
    value = request_id_of(scope)
    headers = list(message.get("headers") or [])
    if not any(name.lower() == _HEADER_KEY for name, _ in headers):
        headers.append((_HEADER_KEY, value.encode("latin-1")))
        message["headers"] = headers
    if _current.get() is None:
        # a response no route handled: the server's access line, written while sending, still gets the id (the
        # server runs each request in a task of its own, so this ends with the request)
        _current.set(value)


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id``: the current request's id, or ``-`` outside a request. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(getattr(record, "request_id", None), str):
            record.request_id = _current.get() or NO_REQUEST
        return True


# a token in a query string (the live feed's ``/ws?token=rl_…`` handshake) never reaches a log line
_QUERY_SECRET = re.compile(r"([?&](?:token|api_key|access_token)=)[^&\s\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the values of ``token=``, ``api_key=`` and ``access_token=`` query parameters hidden."""
    return _QUERY_SECRET.sub(r"\1[redacted]", text) if "=" in text else text


class RedactSecretsFilter(logging.Filter):
    """Hides secrets in query strings (uvicorn logs a WebSocket's path with its query, and access lines too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def logging_config(level: str = "INFO") -> LoggingConfig:
    """Litestar's default logging (a queue handler on the root logger), with the request id on every line."""
    handlers = {
        name: {**spec, "filters": [*spec.get("filters", []), "request_id", "redact"]}
        for name, spec in LoggingConfig().handlers.items()
    }
    return LoggingConfig(
        filters={"request_id": {"()": RequestIdFilter}, "redact": {"()": RedactSecretsFilter}},
        formatters={"standard": {"format": LOG_FORMAT}},
        handlers=handlers,
        root={"handlers": ["queue_listener"], "level": level.upper()},
    )


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging with the request id on its lines (access lines: the id of the request they describe)."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"request_id": {"()": RequestIdFilter}, "redact": {"()": RedactSecretsFilter}}
    for handler in config["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "request_id", "redact"]
    config["formatters"]["default"]["fmt"] = "%(levelprefix)s [%(request_id)s] %(message)s"
    config["formatters"]["access"]["fmt"] = (
        '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s [%(request_id)s]'
    )
    return config

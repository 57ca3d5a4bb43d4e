"""Workspace events: the typed value, its id (the resume cursor), type patterns and payload conditions.

An event is something that happened in a workspace: a member's own (``POST /api/v1/events``), or Ragline's
(``file.ready``, ``run.finished``, ``prompt.published``, ``token.revoked``, ``automation.loop_stopped`` …).
Automations react to events, subscriptions forward them as signed webhooks, and live clients follow them.

Ids sort in emit order: ``evt_`` + 13 hex digits of microseconds since the epoch + 6 hex digits naming the
process. Within one process they strictly increase (two emits in the same microsecond get consecutive values),
so an id is a cursor: "everything after ``evt_…``". Across processes they interleave by the processes' clocks.
No SQL and no HTTP here: the log lives in ``api.services.events``.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from engine.errors import InvalidInput

ID_PREFIX = "evt_"
ID_LENGTH = len(ID_PREFIX) + 13 + 6
MAX_TYPE = 128
MAX_PATTERN = 128
MAX_PAYLOAD_BYTES = 64 * 1024
# a type is dotted lower-case words: "invoice.paid", "file.ready"; a pattern may put "*" for a word
TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]*(?:\.[a-z0-9_-]+){0,7}$")
PATTERN_RE = re.compile(r"^(?:\*|[a-z][a-z0-9_-]*)(?:\.(?:\*|[a-z0-9_-]+)){0,7}$")
# the first word of Ragline's own event types: members cannot emit these (a forged "token.revoked" or
# "run.finished" could set off automations and subscribers that trust them)
RESERVED = frozenset({
    "system", "ragline", "file", "run", "prompt", "token", "automation", "subscription", "workflow", "agent",
    "knowledge_base", "trigger", "member", "user", "workspace",
})  # fmt: skip


class WorkspaceEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a workspace's log."""

    id: str  # monotonic and sortable: the resume cursor
    workspace_id: str
    type: str
    payload: dict[str, Any]
    source: str  # "api" (a member), "system" (Ragline), "run:<id>", "automation:<id>", "workflow:<id>" …
    ts: float  # Unix seconds
    depth: int = 0  # automation hops that led to it (an event a run emits carries its run's depth)
    run_id: str | None = None  # the run that emitted it, if any

    def as_dict(self) -> dict[str, Any]:
        """The event as plain data (an automation's condition and input read it as ``input``)."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


class EventIds:
    """Sortable ids, strictly increasing within this process (thread-safe)."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or secrets.token_hex(3)
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last = max(time.time_ns() // 1000, self._last + 1)
            return f"{ID_PREFIX}{self._last:013x}{self.tag}"


def id_time(event_id: str) -> float | None:
    """The Unix time an id was made at (``None``: not an event id)."""
    if not is_event_id(event_id):
        return None
    return int(event_id[len(ID_PREFIX) : len(ID_PREFIX) + 13], 16) / 1e6


def is_event_id(value: str) -> bool:
    return len(value) == ID_LENGTH and value.startswith(ID_PREFIX) and _hex(value[len(ID_PREFIX) :])


def _hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def check_type(event_type: str, *, user: bool = False) -> str:
    """Refuse a malformed type (and, for ``user`` events, Ragline's reserved first words). Raises ``InvalidInput``."""
    if len(event_type) > MAX_TYPE or not TYPE_RE.fullmatch(event_type):
        raise InvalidInput("an event type is dotted lower-case words (letters, digits, _ or -), like invoice.paid")
    if user and event_type.split(".", 1)[0] in RESERVED:
        raise InvalidInput(
            f"event types starting with {event_type.split('.', 1)[0]!r} are Ragline's own: choose another first word"
        )
    return event_type


def check_pattern(pattern: str) -> str:
    """A type pattern: a type, with ``*`` standing for one word (a final ``*`` for one or more). ``*`` alone: all."""
    if len(pattern) > MAX_PATTERN or not PATTERN_RE.fullmatch(pattern):
        raise InvalidInput(f"{pattern!r} is not an event type pattern (e.g. file.*, invoice.paid or *)")
    return pattern


def type_matches(pattern: str, event_type: str) -> bool:
    """Whether ``event_type`` matches ``pattern`` (``file.*`` matches ``file.ready`` and ``file.x.y``)."""
    if pattern == "*" or pattern == event_type:
        return True
    want, have = pattern.split("."), event_type.split(".")
    if want[-1] == "*" and len(have) >= len(want):
        have = [*have[: len(want) - 1], "*"]
    elif len(want) != len(have):
        return False
    return all(w in ("*", h) for w, h in zip(want, have, strict=True))


def matches_any(patterns: Sequence[str], event_type: str) -> bool:
    return any(type_matches(p, event_type) for p in patterns)

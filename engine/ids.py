"""Ids and clock values shared by the run runtime, the metadata tables and the API views (no SQL here).

Inside Ragline a moment is Unix seconds (a float); views shown to people and clients carry aware UTC
datetimes, which the API encodes as ISO-8601 strings."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime


def new_id(prefix: str) -> str:
    """Opaque, unguessable ids with a readable type prefix (``kb_…``, ``file_…``)."""
    return f"{prefix}_{secrets.token_hex(12)}"


def now() -> float:
    return time.time()


def utc(ts: float) -> datetime:
    """Unix seconds as an aware UTC datetime (encoded on the wire as ISO-8601, e.g. ``2024-01-15T10:30:00Z``)."""
    return datetime.fromtimestamp(ts, UTC)


def utc_or_none(ts: float | None) -> datetime | None:
    return None if ts is None else utc(ts)


def unix(value: datetime | float | None) -> float | None:
    """A timestamp from a request (ISO-8601 or Unix seconds) as Unix seconds; naive datetimes are UTC."""
    if value is None or isinstance(value, float | int):
        return None if value is None else float(value)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def iso(ts: float) -> str:
    """Unix seconds as an ISO-8601 UTC string, the way msgspec writes an aware UTC datetime."""
    return utc(ts).isoformat().replace("+00:00", "Z")

"""Ids and clock values shared by the run runtime and the metadata tables (no SQL here)."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    """Opaque, unguessable ids with a readable type prefix (``kb_…``, ``file_…``)."""
    return f"{prefix}_{secrets.token_hex(12)}"


def now() -> float:
    return time.time()

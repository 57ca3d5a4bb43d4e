"""User metadata on files: validated once, copied to every chunk's payload, matched exactly in search.

Values are strings, integers or lists of strings (a list matches when it contains one of the accepted
values). Floats are refused: exact matching on them is a trap; send them as strings. Booleans are refused
too: qdrant-edge 0.9's Python binding turns a boolean match value into the integer 1, so a stored boolean
could never be found (send "true"/"false"). Keys are plain identifiers, so ``metadata.<key>`` is an
unambiguous payload path on every Qdrant deployment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.errors import InvalidInput
from engine.types import MetadataScalar, MetadataValue

MAX_KEYS = 32
MAX_STRING = 256
MAX_LIST = 32
MAX_INT = 2**53  # JSON's exact-integer range
MAX_FILTER_KEYS = 16
MAX_FILTER_VALUES = 100
METADATA_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")  # a whole key (fullmatch)


def clean_metadata(raw: Any) -> dict[str, MetadataValue]:
    """Validate a file's metadata object.

    Raises:
        InvalidInput: not an object, too many keys, a bad key, or a value of an unsupported type or size.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput("metadata must be a JSON object")
    if len(raw) > MAX_KEYS:
        raise InvalidInput(f"metadata has more than {MAX_KEYS} keys")
    cleaned: dict[str, MetadataValue] = {}
    for key, value in raw.items():
        _check_key(key)
        if isinstance(value, list):
            if len(value) > MAX_LIST or not all(isinstance(item, str) for item in value):
                raise InvalidInput(f"metadata {key!r}: a list holds at most {MAX_LIST} strings")
            cleaned[key] = [_scalar(key, item) for item in value]  # type: ignore[misc]
        else:
            cleaned[key] = _scalar(key, value)
    return cleaned


def metadata_filter(raw: Any) -> tuple[tuple[str, tuple[MetadataScalar, ...]], ...] | None:
    """Validate a search's metadata filter: ``{key: value}`` or ``{key: [accepted values]}``.

    Raises:
        InvalidInput: as ``clean_metadata``; an empty list of accepted values is allowed and matches nothing.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidInput("the metadata filter must be a JSON object")
    if len(raw) > MAX_FILTER_KEYS:
        raise InvalidInput(f"the metadata filter has more than {MAX_FILTER_KEYS} keys")
    conditions: list[tuple[str, tuple[MetadataScalar, ...]]] = []
    for key, value in raw.items():
        _check_key(key)
        values = value if isinstance(value, list) else [value]
        if len(values) > MAX_FILTER_VALUES:
            raise InvalidInput(f"metadata filter {key!r}: at most {MAX_FILTER_VALUES} values")
        accepted = tuple(_scalar(key, item) for item in values)
        if len({type(item) for item in accepted}) > 1:  # Qdrant's match-any takes strings or integers, not both
            raise InvalidInput(f"metadata filter {key!r}: accepted values must be all strings or all integers")
        conditions.append((key, accepted))
    return tuple(conditions)


def _check_key(key: Any) -> None:
    if not isinstance(key, str) or not METADATA_KEY.fullmatch(key):
        raise InvalidInput(f"metadata key {key!r} must be a letter or _ then up to 63 letters, digits, _ or -")


def _scalar(key: str, value: Any) -> MetadataScalar:
    if isinstance(value, bool):
        raise InvalidInput(f'metadata {key!r}: booleans cannot be matched; send "true" or "false"')
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise InvalidInput(f"metadata {key!r}: integers must lie within +-2^53")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING or "\x00" in value:
            raise InvalidInput(f"metadata {key!r}: strings are at most {MAX_STRING} characters, without NUL")
        return value
    raise InvalidInput(f"metadata {key!r}: values are strings, integers or lists of strings")

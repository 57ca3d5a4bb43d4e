"""Trigger input templates: ``{field.path}`` placeholders filled from the event (plain data only, no code)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from engine.errors import InvalidInput

MAX_TEMPLATE = 10_000
MAX_VALUE = 20_000  # one substituted field
MAX_INPUT = 100_000  # the rendered run input (the same bound as a run's input over the API)

# {{ and }} are literal braces; {a.b.0} looks up keys (and list indices) in the event, nothing else
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_-]{0,63}(?:\.[A-Za-z0-9_-]{1,64}){0,9})\}|[{}]")


def check_template(template: str) -> str:
    """Refuse stray braces and over-long templates at save time (422)."""
    if len(template) > MAX_TEMPLATE:
        raise InvalidInput(f"input_template is longer than {MAX_TEMPLATE} characters")
    for match in _TOKEN.finditer(template):
        if match.group(0) in ("{", "}"):
            raise InvalidInput("input_template: use {field.path} placeholders, and {{ or }} for literal braces")
    return template


def _lookup(event: Any, path: str) -> Any:
    value = event
    for key in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text[:MAX_VALUE]


def render_template(template: str, event: Mapping[str, Any]) -> str:
    """Fill ``{field.path}`` placeholders from ``event`` (plain data only); missing fields are empty."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return _text(_lookup(event, match.group(1))) if match.group(1) else token

    return _TOKEN.sub(substitute, template)[:MAX_INPUT]

"""Example values for the OpenAPI document: deterministic samples made from JSON schemas and field names.

``api.openapi`` fills every parameter, request body and response that has no example of its own with
``sample(schema)``: ids get their resource's prefix, names and texts read like one HR-handbook workspace, numbers
stay inside the schema's bounds and strings match its pattern, so the docs read like real traffic and a
client can paste them.
"""

from __future__ import annotations

import re
from typing import Any

JSON = dict[str, Any]
_ID_PREFIX = {"agent": "agt", "kb": "kb", "file": "file", "run": "run", "execution": "run", "session": "chat",
              "token": "tok", "user": "usr", "workspace": "ws", "trigger": "trg", "delivery": "cbd", "chunk": "chk"}
_OWNER_PREFIX = {"Agent": "agt", "KnowledgeBase": "kb", "File": "file", "Execution": "run", "Session": "chat",
                 "Token": "tok", "Workspace": "ws", "Trigger": "trg", "Callback": "cbd", "Member": "usr", "User": "usr"}
_NAMES = {"Agent": "Support agent", "Workspace": "Acme HR", "Token": "support bot", "Trigger": "Nightly digest",
          "Member": "Ada Lovelace", "User": "Ada Lovelace", "File": "handbook.pdf", "Upload": "handbook.pdf"}
_FAMILIES = (*_OWNER_PREFIX, "Upload")
_TEXT = {
    "description": "Policies and procedures for all employees.", "instructions": "Answer from the knowledge base "
    "and cite your sources.", "query": "How many vacation days do new employees get?",
    "input": "Summarise the vacation policy.", "content": "Summarise the vacation policy.",
    "message": "Summarise the vacation policy.", "text": "New employees get 25 vacation days per year.",
    "model": "ragline/extractive", "cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "mime": "application/pdf",
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "file_type": "pdf",
    "file_name": "handbook.pdf", "status": "ready", "role": "viewer", "tag": "hr", "heading_path": "Benefits",
    "secret": "rl_q8Zt3kVb1mXo9LwPa2Rs", "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La",
    "callback_secret": "whsec_Xp4nB7cT2qLs9VdR1mZw8KeYh3Fa", "prefix": "rl_q8Zt3kV", "user_name": "Ada Lovelace",
    "workspace_name": "Acme HR", "action": "token.created", "event": "run.finished", "kind": "chat",
    "error": "the PDF is encrypted", "error_code": "model_error", "warning": "page 3 has no text layer",
    "input_template": "New order: {{body.id}}", "path": "orders-7f3a9c", "output": "New employees get 25 days.",
    "tool": "knowledge_search", "department": "hr", "chunk_id": "6f1c2d3e-8a4b-5c7d-9e0f-1a2b3c4d5e6f",
    "before": "Vacation is booked in the HR portal.", "after": "Unused days carry over until March.",
    "username": "ada", "password": "correct horse battery staple", "token": "rl_q8Zt3kVb1mXo9LwPa2Rs",
    "token_type": "bearer",
}
_NUMBERS = {"score": 0.82, "progress": 1.0, "page": 1, "limit": 20, "total": 1, "total_pages": 1, "size": 48213,
            "top_k": 10, "ordinal": 0, "char_start": 0, "char_end": 512, "attempts": 1, "status_code": 200,
            "last_status_code": 200, "max_steps": 8, "timeout_s": 120.0, "temperature": 0.2, "seq": 1,
            "expires_in_days": 30, "file_count": 3, "pages_total": 12, "pages_done": 12, "chunks_total": 42,
            "chunks_done": 42, "neighbors": 0}
DATE_TIME = "2024-01-15T10:30:00Z"
UNIX_TIME = 1705314600.0
_SUFFIX_NUMBERS = {"_at": UNIX_TIME, "_after": UNIX_TIME, "_before": UNIX_TIME, "_ms": 120.0, "tokens": 512}
_HEX = "3f9c2a7b1e4d5c6a8b9d0e1f"
SSE_EXAMPLE = "".join(
    f'event: {kind}\nid: {seq}\ndata: {{"type":"{kind}","run_id":"run_{_HEX}","seq":{seq},"ts":"{DATE_TIME}",'
    f"{rest}}}\n\n"
    for seq, kind, rest in (
        (1, "execution", f'"execution_id":"run_{_HEX}","agent":"Support agent","model":"ragline/extractive"'),
        (2, "content", '"content":"New employees get 25 days.","text":"New employees get 25 days."'),
        (3, "done", '"output":"New employees get 25 days.","token_usage":{"prompt":412,"completion":9,"total":421},'
         '"time":1.84'),
    )
)
WORKSPACE_SSE_EXAMPLE = (
    f'event: file.ready\nid: evt_0605c1f2a3b4c5d6e7f\ndata: {{"id":"evt_0605c1f2a3b4c5d6e7f",'
    f'"workspace_id":"ws_{_HEX}","type":"file.ready","payload":{{"file_id":"file_{_HEX}","kb_id":"kb_{_HEX}",'
    f'"name":"handbook.pdf","chunks":42}},"source":"ragline","ts":"{DATE_TIME}","depth":0,"run_id":null}}\n\n'
)


def sample(schema: JSON, schemas: JSON, name: str = "", owner: str = "", *, full: bool = True, depth: int = 0) -> Any:
    """A deterministic example value for ``schema``; ``full=False`` keeps an object's required properties only."""
    if depth > 12:
        return None
    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        target = schemas.get(ref, {})
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return sample(merged, schemas, name, target.get("title", ref), full=full, depth=depth + 1)
    if schema.get("examples") or schema.get("enum") or "const" in schema:
        return (schema.get("examples") or schema.get("enum") or [schema.get("const")])[0]
    for key in ("oneOf", "anyOf", "allOf"):
        if key in schema:
            branches = [b for b in schema[key] if b.get("type") != "null"] or schema[key]
            merged = {**branches[0], **{k: v for k, v in schema.items() if k != key}}
            return sample(merged, schemas, name, owner, full=full, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return _sample_object(schema, schemas, name, owner, full, depth)
    if kind == "array":
        return [sample(schema.get("items", {}), schemas, name.removesuffix("s"), owner, full=full, depth=depth + 1)]
    if kind in ("integer", "number"):
        return _sample_number(schema, name, kind)
    if kind == "boolean":
        return bool(schema.get("default", name in ("enabled", "active")))
    if kind == "string":
        return sample_string(schema, name, owner)
    return None if kind == "null" else {}


def _sample_object(schema: JSON, schemas: JSON, name: str, owner: str, full: bool, depth: int) -> Any:
    props: JSON = schema.get("properties", {})
    if not props:
        extra = schema.get("additionalProperties")
        key = "department" if name == "metadata" else "key"
        return {key: sample(extra, schemas, key, owner, depth=depth + 1)} if isinstance(extra, dict) and extra else {}
    owner = schema.get("title", owner)
    keys = list(props) if full or not schema.get("required") else schema["required"]
    return {key: sample(props[key], schemas, key, owner, full=full, depth=depth + 1) for key in keys}


def _sample_number(schema: JSON, name: str, kind: str) -> int | float:
    suffix = next((v for k, v in _SUFFIX_NUMBERS.items() if name.endswith(k)), None)
    default = schema.get("default")
    value: float = _NUMBERS.get(name, suffix if suffix is not None else (
        default if isinstance(default, int | float) else schema.get("minimum", 1)))
    value = min(max(value, schema.get("minimum", value)), schema.get("maximum", value))
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        value = schema["exclusiveMinimum"] + 1
    return int(value) if kind == "integer" else float(value)


def sample_string(schema: JSON, name: str, owner: str) -> str:
    family = next((word for word in _FAMILIES if word in owner), "")
    if schema.get("format") == "date-time":
        text = DATE_TIME
    elif name == "message" and "Envelope" in owner:
        text = "OK"
    elif name == "secret" and family != "Token":
        text = _TEXT["webhook_secret"]
    elif name in _TEXT:
        text = _TEXT[name]
    elif name == "id" or name.endswith("_id"):
        stem = name.removesuffix("_id").rsplit("_", 1)[-1]
        prefix = _OWNER_PREFIX.get(family, "id") if name == "id" else _ID_PREFIX.get(stem, stem[:4] or "id")
        text = f"{prefix}_{_HEX}"
    elif name == "name":
        text = _NAMES.get(family, "Employee handbook")
    elif name.endswith("url"):
        text = "https://example.com/hooks/ragline"
    else:
        text = name.replace("_", " ") or "text"
    min_length, max_length = schema.get("minLength", 0), schema.get("maxLength", len(text))
    text = text.ljust(min_length, "x")[:max_length]
    pattern = schema.get("pattern")
    if pattern and not re.search(pattern, text):  # e.g. identifiers: the first common shape that fits
        text = next((c for c in (text.replace(" ", "_").upper(), text.replace(" ", "-").lower(), "example")
                     if re.search(pattern, c)), text)
    return text

"""``function_tool``: a typed Python function (sync or async) as a ``Tool`` the model can call.

The JSON schema comes from the type hints (a generated msgspec Struct, ``$defs`` inlined) and the
description from the docstring (first paragraph; Google-style ``Args:`` become property
descriptions). Arguments are validated against the same Struct, and a validation error goes back
to the model as an error result, never up the stack.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any, get_type_hints

import anyio.to_thread
import msgspec

from engine.ports import ToolContext, ToolResult

_ARG_LINE = re.compile(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?:\s*(.+)$")


def _doc_parts(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    doc = inspect.getdoc(fn) or ""
    summary = doc.split("\n\n", 1)[0].strip().replace("\n", " ")
    params: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args and line and not line.startswith(" "):
            in_args = False
        match = _ARG_LINE.match(line) if in_args else None
        if match:
            params[match.group(1)] = match.group(2).strip()
    return summary, params


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace every ``$ref`` with its ``$defs`` entry (models handle flat schemas best)."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved = resolve(schema)
    assert isinstance(resolved, dict)
    return resolved


def _result(value: Any) -> ToolResult:
    if isinstance(value, ToolResult):
        return value
    content = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    summary = content if len(content) <= 120 else content[:117] + "..."
    return ToolResult(content=content, summary=summary)


def _validation_message(exc: msgspec.ValidationError) -> str:
    return f"Invalid arguments: {exc}. Call the tool again with arguments matching its schema."


class FunctionTool:
    """A ``Tool`` wrapping a Python function; build it with ``function_tool``."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        hints = get_type_hints(fn)
        summary, arg_docs = _doc_parts(fn)
        self.description = description or summary or self.name
        self._ctx_param: str | None = None
        fields: list[Any] = []
        for param in inspect.signature(fn).parameters.values():
            hint = hints.get(param.name, Any)
            if hint is ToolContext:
                self._ctx_param = param.name
                continue
            if param.default is inspect.Parameter.empty:
                fields.append((param.name, hint))
            else:
                fields.append((param.name, hint, param.default))
        struct_name = "".join(p.title() for p in self.name.split("_")) + "Args"
        self._args_type = msgspec.defstruct(struct_name, fields, kw_only=True, forbid_unknown_fields=True)
        schema = inline_refs(msgspec.json.schema(self._args_type))
        schema.pop("title", None)
        for prop, text in arg_docs.items():
            if prop in schema.get("properties", {}):
                schema["properties"][prop].setdefault("description", text)
        schema.setdefault("properties", {})
        schema["additionalProperties"] = False
        self.parameters: dict[str, Any] = schema
        self._is_async = inspect.iscoroutinefunction(fn)

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            parsed = msgspec.convert(args, self._args_type, strict=False)
        except msgspec.ValidationError as exc:
            return ToolResult(content=_validation_message(exc), summary="invalid arguments", is_error=True)
        kwargs = msgspec.structs.asdict(parsed)
        if self._ctx_param:
            kwargs[self._ctx_param] = ctx
        if self._is_async:
            value = await self.fn(**kwargs)
        else:  # sync tools may block (files, CPU): keep them off the event loop
            value = await anyio.to_thread.run_sync(lambda: self.fn(**kwargs))
        return _result(value)


def function_tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None
) -> Any:
    """Turn a typed function into a ``Tool``; usable as ``@function_tool`` or ``function_tool(fn)``.

    Args:
        fn: The function. A parameter annotated ``ToolContext`` receives the run's context.
        name: Tool name (default: the function's name).
        description: Tool description (default: the docstring's first paragraph).

    Returns:
        A ``FunctionTool`` (or a decorator producing one when ``fn`` is omitted).
    """
    if fn is None:
        return lambda f: FunctionTool(f, name=name, description=description)
    return FunctionTool(fn, name=name, description=description)


def parse_arguments(raw: str) -> dict[str, Any] | str:
    """A tool call's JSON arguments as a dict, or an error message for the model."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return f"Invalid JSON in tool arguments ({exc.__class__.__name__}: {exc}). Send a JSON object."
    if not isinstance(value, dict):
        return "Tool arguments must be a JSON object."
    return value

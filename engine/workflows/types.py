"""The small type system save-time checks use: what a path such as ``steps.search.output.hits`` holds.

A ``VType`` is a JSON kind (``string``, ``number``, ``integer``, ``boolean``, ``array``, ``object``, ``null``) or
``any`` (unknown: never a mismatch). Objects know their fields; a *closed* object (a step's output, an input
schema with ``properties``) refuses a field it does not have, which catches typos at save time. Types come from
JSON Schema (a workflow's ``input_schema``, a tool's parameters) and from each step kind's output shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("string", "number", "integer", "boolean", "array", "object", "null", "any")


@dataclass(frozen=True)
class VType:
    kind: str = "any"
    fields: Mapping[str, VType] = field(default_factory=dict)  # objects: the known fields
    closed: bool = False  # objects: a field not in ``fields`` is an error (else: any)
    items: VType | None = None  # arrays: the item type (None: any)
    nullable: bool = False

    def describe(self) -> str:
        name = self.kind if self.kind != "array" or self.items is None else f"array of {self.items.describe()}"
        return f"{name} or null" if self.nullable and self.kind not in ("null", "any") else name

    @property
    def numeric(self) -> bool:
        return self.kind in ("number", "integer")


ANY = VType()
STRING = VType("string")
INTEGER = VType("integer")
NUMBER = VType("number")
BOOLEAN = VType("boolean")
NULL = VType("null")


def obj(fields: Mapping[str, VType] | None = None, *, closed: bool = True) -> VType:
    return VType("object", fields=dict(fields or {}), closed=closed and fields is not None)


def array(items: VType | None = None) -> VType:
    return VType("array", items=items)


def nullable(t: VType) -> VType:
    return VType(t.kind, t.fields, t.closed, t.items, nullable=True)


def of_value(value: Any) -> VType:
    """The type of a literal JSON value (objects closed over their keys: a template's shape is exact)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        return array(common([of_value(v) for v in value]))
    if isinstance(value, dict):
        return obj({str(k): of_value(v) for k, v in value.items()})
    return ANY


def from_schema(schema: Any, depth: int = 0) -> VType:
    """A JSON Schema as a ``VType`` (what it cannot say exactly, such as ``anyOf``, is ``any``)."""
    if not isinstance(schema, Mapping) or depth > 32:
        return ANY
    kind = schema.get("type")
    is_nullable = False
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        is_nullable = len(kinds) < len(kind)
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None and "properties" in schema:
        kind = "object"
    if kind not in KINDS:
        return ANY
    result = VType(kind)
    if kind == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties", None)
        if isinstance(props, Mapping):
            fields = {str(k): from_schema(v, depth + 1) for k, v in props.items()}
            result = VType("object", fields=fields, closed=extra is None or extra is False)
    elif kind == "array":
        result = array(from_schema(schema.get("items"), depth + 1) if "items" in schema else None)
    return nullable(result) if is_nullable else result


def assignable(source: VType, wanted: str) -> bool:
    """Whether a value of ``source`` may go where a ``wanted`` kind is declared (``any``: unknown, fine)."""
    if wanted == "any" or source.kind == "any":
        return True
    if wanted == "number":
        return source.numeric
    return source.kind == wanted


def comparable(left: VType, right: VType) -> bool:
    """``==`` between these can be true (``null`` compares with anything: a missing value)."""
    if "any" in (left.kind, right.kind) or "null" in (left.kind, right.kind) or left.nullable or right.nullable:
        return True
    if left.numeric and right.numeric:
        return True
    return left.kind == right.kind


def ordered(left: VType, right: VType) -> bool:
    """``<`` and friends are defined between these (numbers with numbers, strings with strings)."""
    if "any" in (left.kind, right.kind):
        return True
    return (left.numeric and right.numeric) or (left.kind == right.kind == "string")


def common(types: list[VType]) -> VType | None:
    """The one type all of ``types`` share, else ``None`` (a mix)."""
    if not types:
        return None
    first = types[0]
    return first if all(t == first for t in types[1:]) else None


def type_name(value: Any) -> str:
    return of_value(value).kind if value is not None else "null"

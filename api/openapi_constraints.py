"""Bounds the app enforces that Litestar's generated document leaves out, put back from the types that enforce them.

Litestar copies a bound only when it is truthy (``ge=0`` is lost, on query parameters and optional Struct fields
alike) and never the constraints on a list's items (``list[Annotated[str, Meta(min_length=1)]]``), so the document
allowed what the app refuses with a 400 or 422 (10 operations in a schemathesis run with every check on). The
msgspec type of each body Struct, and the ``Parameter`` of each query parameter, are what the app validates with;
this reads them and adds every bound a schema lacks, never changing one it has. Litestar writes an optional value's
bounds beside its ``oneOf`` (JSON Schema applies ``minimum`` to numbers only, so ``null`` still passes); added
bounds go there too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import msgspec.inspect as mi
from litestar.handlers import HTTPRouteHandler
from litestar.params import ParameterKwarg

JSON = dict[str, Any]
_NUMBER = (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum"), ("lt", "exclusiveMaximum"),
           ("multiple_of", "multipleOf"))  # fmt: skip
_STRING = (("min_length", "minLength"), ("max_length", "maxLength"), ("pattern", "pattern"))
_ARRAY = (("min_length", "minItems"), ("max_length", "maxItems"))
_OBJECT = (("min_length", "minProperties"), ("max_length", "maxProperties"))
_PARAMETER = (*_NUMBER[:4], ("min_length", "minLength"), ("max_length", "maxLength"))  # what a Parameter can bound
_ARRAYS = (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)
_JSON_TYPES: dict[type, str] = {mi.StrType: "string", mi.IntType: "integer", mi.FloatType: "number",
                                mi.DictType: "object", **dict.fromkeys(_ARRAYS, "array")}  # fmt: skip
_LITESTAR_READS = {"title", "description", "examples", "extra"}  # the keys of extra_json_schema Litestar copies


def struct_components(schemas: JSON) -> Iterator[tuple[type[msgspec.Struct], JSON]]:
    """Each msgspec Struct with its component. Litestar names a component after its class, prefixed by its module's
    names when two classes share one (``chat_MessageBody``); a component is taken for a class when it also has
    exactly the class's fields. Tagged structs are left out: their tag is not among a component's properties."""
    waiting: list[type[msgspec.Struct]] = [msgspec.Struct]
    while waiting:
        for cls in waiting.pop().__subclasses__():
            waiting.append(cls)
            if cls.__struct_config__.tag_field is not None:
                continue
            parts = [*cls.__module__.split("."), *cls.__qualname__.split(".")]
            for size in range(1, len(parts) + 1):
                schema = schemas.get("_".join(parts[-size:]))
                if schema is not None and set(schema.get("properties", {})) == set(cls.__struct_encode_fields__):
                    yield cls, schema
                    break


def constrain_struct(cls: type[msgspec.Struct], schema: JSON) -> None:
    """Add the bounds of ``cls``'s fields to the properties of its component."""
    try:
        info = mi.type_info(cls)
    except (TypeError, ValueError):  # a type msgspec cannot describe: Litestar's schema stays as it is
        return
    properties = schema.get("properties", {})
    for field in getattr(info, "fields", ()):
        if field.encode_name in properties:
            constrain(properties[field.encode_name], field.type)


def constrain(schema: JSON, kind: mi.Type) -> None:
    """Add to ``schema`` the bounds of ``kind`` it lacks, its items' included."""
    if isinstance(kind, mi.Metadata):
        extra = {k: v for k, v in (kind.extra_json_schema or {}).items() if k not in _LITESTAR_READS}
        for key, value in extra.items():  # e.g. a pattern the service checks with a message of its own
            _branch(schema, _JSON_TYPES.get(type(kind.type), "")).setdefault(key, value)
        kind = kind.type
    if isinstance(kind, mi.UnionType):
        options = [option for option in kind.types if not isinstance(option, mi.NoneType)]
        if len(options) == 1:
            constrain(schema, options[0])
        return
    if "$ref" in schema:
        return  # a component of its own, constrained as a struct
    for attribute, key in _bound_names(kind):
        value = getattr(kind, attribute, None)
        if value is not None:
            schema.setdefault(key, value)
    _constrain_contents(schema, kind)


def _constrain_contents(schema: JSON, kind: mi.Type) -> None:
    """The bounds of a container's items, or of a mapping's values and keys."""
    if isinstance(kind, _ARRAYS):
        items = _branch(schema, "array").get("items")
        if isinstance(items, dict):
            constrain(items, kind.item_type)
    elif isinstance(kind, mi.DictType):
        mapping = _branch(schema, "object")
        if isinstance(mapping.get("additionalProperties"), dict):
            constrain(mapping["additionalProperties"], kind.value_type)
        names: JSON = {}
        constrain(names, kind.key_type)
        if names:
            mapping.setdefault("propertyNames", names)


def _bound_names(kind: mi.Type) -> tuple[tuple[str, str], ...]:
    """(msgspec attribute, JSON Schema key) of the bounds a type of this kind can have."""
    if isinstance(kind, mi.IntType | mi.FloatType):
        return _NUMBER
    if isinstance(kind, mi.StrType):
        return _STRING
    if isinstance(kind, _ARRAYS):
        return _ARRAY
    return _OBJECT if isinstance(kind, mi.DictType) else ()


def _branch(schema: JSON, json_type: str) -> JSON:
    """The part of ``schema`` for values of ``json_type`` (the non-null branch of an optional)."""
    options: list[JSON] = schema.get("oneOf", [])
    for option in options:
        if option.get("type") == json_type:
            return option
    return schema


def ecma_patterns(node: Any) -> None:
    """Patterns in ECMA-262 form, as JSON Schema reads them. The app's patterns end in Python's ``\\Z`` (its ``$``
    also matches before a final newline: ``"key\\n"`` passed), which ECMA-262 spells ``$``."""
    if isinstance(node, dict):
        pattern = node.get("pattern")
        if isinstance(pattern, str) and pattern.endswith("\\Z"):
            node["pattern"] = pattern[:-2] + "$"
        for value in node.values():
            ecma_patterns(value)
    elif isinstance(node, list):
        for value in node:
            ecma_patterns(value)


def parameter_bounds(handler: HTTPRouteHandler) -> dict[str, JSON]:
    """Query parameter name -> the bounds its ``Parameter`` declares, as schema keys (zeros included)."""
    bounds: dict[str, JSON] = {}
    for name, field in handler.parsed_fn_signature.parameters.items():
        definition = field.kwarg_definition
        if isinstance(definition, ParameterKwarg) and not (definition.header or definition.cookie):
            found = {key: getattr(definition, attribute) for attribute, key in _PARAMETER}
            bounds[definition.query or name] = {key: value for key, value in found.items() if value is not None}
    return bounds

"""JSON templates: any JSON value whose strings may hold ``{{ expression }}`` references.

A string that is exactly one ``{{ … }}`` becomes the expression's value with its type (``"{{ steps.search.output.hits
}}"`` is the list itself); a string with text around references becomes text (values other than strings are
written as JSON, ``null`` as nothing). Templates are compiled once when a workflow is saved or started and rendered
per step with the run's ``input`` and ``steps``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from engine.workflows.expressions import Expr, ExpressionError, Path, evaluate, parse, paths
from engine.workflows.inference import PathTyper, infer
from engine.workflows.types import STRING, VType, array, common, obj, of_value

_REFERENCE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Const:
    value: Any


@dataclass(frozen=True, slots=True)
class Whole:
    expr: Expr


@dataclass(frozen=True, slots=True)
class Text:
    parts: tuple[str | Expr, ...]


@dataclass(frozen=True, slots=True)
class ListT:
    items: tuple[Template, ...]


@dataclass(frozen=True, slots=True)
class DictT:
    items: tuple[tuple[str, Template], ...]


Template = Const | Whole | Text | ListT | DictT


def compile_template(value: Any, problems: list[str], where: str = "") -> Template:
    """Compile ``value``; each malformed reference adds a problem naming where it is (``payload.answer``)."""
    if isinstance(value, str):
        return _compile_string(value, problems, where)
    if isinstance(value, list):
        return ListT(tuple(compile_template(v, problems, f"{where}[{i}]") for i, v in enumerate(value)))
    if isinstance(value, dict):
        return DictT(tuple((str(k), compile_template(v, problems, f"{where}.{k}" if where else str(k)))
                           for k, v in value.items()))  # fmt: skip
    return Const(value)


def _compile_string(text: str, problems: list[str], where: str) -> Template:
    found = list(_REFERENCE.finditer(text))
    if not found:
        return Const(text)
    parts: list[str | Expr] = []
    last = 0
    for match in found:
        if match.start() > last:
            parts.append(text[last : match.start()])
        try:
            parts.append(parse(match.group(1).strip()))
        except ExpressionError as exc:
            problems.append(f"{where + ': ' if where else ''}{{{{{match.group(1).strip()}}}}}: {exc.message}")
            parts.append("")
        last = match.end()
    if last < len(text):
        parts.append(text[last:])
    if len(parts) == 1 and not isinstance(parts[0], str):
        return Whole(parts[0])
    return Text(tuple(parts))


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _encoder.encode(value).decode()


def render(template: Template, scope: Mapping[str, Any]) -> Any:
    """The template's value over ``scope``. Raises ``ExpressionError`` from an expression."""
    if isinstance(template, Const):
        return template.value
    if isinstance(template, Whole):
        return evaluate(template.expr, scope)
    if isinstance(template, Text):
        return "".join(p if isinstance(p, str) else _as_text(evaluate(p, scope)) for p in template.parts)
    if isinstance(template, ListT):
        return [render(item, scope) for item in template.items]
    return {key: render(item, scope) for key, item in template.items}


def template_paths(template: Template) -> Iterator[Path]:
    if isinstance(template, Whole):
        yield from paths(template.expr)
    elif isinstance(template, Text):
        for part in template.parts:
            if not isinstance(part, str):
                yield from paths(part)
    elif isinstance(template, ListT):
        for item in template.items:
            yield from template_paths(item)
    elif isinstance(template, DictT):
        for _, item in template.items:
            yield from template_paths(item)


def template_type(template: Template, typer: PathTyper, problems: list[str]) -> VType:
    """The rendered value's type; type mismatches inside its expressions go to ``problems``."""
    if isinstance(template, Const):
        return of_value(template.value)
    if isinstance(template, Whole):
        return infer(template.expr, typer, problems)
    if isinstance(template, Text):
        for part in template.parts:
            if not isinstance(part, str):
                infer(part, typer, problems)
        return STRING
    if isinstance(template, ListT):
        return array(common([template_type(item, typer, problems) for item in template.items]))
    return obj({key: template_type(item, typer, problems) for key, item in template.items})

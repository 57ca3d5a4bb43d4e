"""Prompt templates: Jinja2 in a sandbox that cannot read files, the environment or Python internals, with
declared typed variables and bounded work. The sandbox is ``api.services.prompt_sandbox``, the limits of one render
``api.services.prompt_limits``; checking declarations, binding values and rendering are here.

* ``ImmutableSandboxedEnvironment`` (a ``SandboxedEnvironment`` that also refuses ``list.append`` and the like),
  ``StrictUndefined``, no loader, no constant folding at compile time. ``{% include %}``, ``{% import %}`` and
  ``{% extends %}`` and ``_``-prefixed attributes are refused when a template is saved; attributes reached
  dynamically (``x['__cla' ~ 'ss__']``) raise the sandbox's ``SecurityError`` when it renders.
* Bounded: every loop iteration, call, filter and intercepted operator spends steps of a per-render budget
  (``MAX_WORK``; big operands and results cost more) under a wall-clock deadline (``MAX_RENDER_S``). Sizes are
  checked *before* anything allocates: ``'x' * 10**9``, ``2 ** 10**9``, ``'%999999999s' % x``, ``center(10**9)``,
  ``join``, ``replace``, ``~`` and every filter, call and ``{{ ... }}`` look at their operands' size as text
  (containers deeply, so ``[big] * n`` or a namespace holding ``big`` many times counts in full): nothing past
  ``MAX_VALUE`` characters is made, no integer past ``MAX_INT_BITS`` bits, ``range`` yields at most
  ``MAX_RANGE`` items and the rendered messages hold at most ``MAX_OUTPUT`` characters together. Only a safe
  list of filters and of builtin methods exists (no ``str.format``, ``translate``, ``to_bytes``, ``striptags``,
  ``random``, ``lipsum``...). Whatever a template does wrong is an ``InvalidInput`` (422).
* Variables are declared (``string``, ``number``, ``integer``, ``boolean``, ``array``, ``object``; required, or
  optional with a default); missing and mistyped values are refused together, every problem listed.
  ``vars.NAME`` reads a workspace variable of the run's environment (saved prompts only: not inline text).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from jinja2 import TemplateError, meta, nodes
from jinja2.exceptions import SecurityError

from api.services.prompt_limits import MAX_OUTPUT, TemplateLimit, render_budget
from api.services.prompt_sandbox import GLOBALS, compiled, parse, unsafe_nodes
from engine.errors import InvalidInput

VARIABLE_TYPES = ("string", "number", "integer", "boolean", "array", "object")
ROLES = ("system", "user", "assistant")
WORKSPACE_VARS = "vars"
RESERVED = frozenset({*GLOBALS, WORKSPACE_VARS, "loop", "caller", "varargs", "kwargs", "self", "true", "false",
                      "none", "True", "False", "None"})  # fmt: skip


class PromptMessage(msgspec.Struct, frozen=True, kw_only=True):
    role: str  # system | user | assistant
    content: str  # a template (rendered: text)


class VariableDef(msgspec.Struct, frozen=True, kw_only=True):
    """A declared variable. A ``default`` (not null) makes it optional; so does ``required: false``."""

    name: str
    type: str = "string"
    required: bool = True
    default: Any = None
    description: str = ""


# -- checking a template when it is saved -------------------------------------------------------------------------


class TemplateFacts(msgspec.Struct, frozen=True):
    names: frozenset[str]  # variables it reads (beyond globals and its own assignments)
    workspace_vars: frozenset[str]  # vars.NAME it reads


def _facts(ast: nodes.Template) -> tuple[TemplateFacts, list[str]]:
    problems = unsafe_nodes(ast)
    workspace_vars, other_uses = set(), 0
    for name in ast.find_all(nodes.Name):
        other_uses += name.name == WORKSPACE_VARS
    for attr in ast.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == WORKSPACE_VARS:
            workspace_vars.add(attr.attr)
            other_uses -= 1
    if other_uses > 0:
        problems.append("workspace variables are read as vars.NAME only")
    try:
        names = meta.find_undeclared_variables(ast) - set(GLOBALS) - {WORKSPACE_VARS}
    except TemplateError as exc:
        problems.append(str(exc.message))
        names = set()
    return TemplateFacts(frozenset(names), frozenset(workspace_vars)), problems


@functools.lru_cache(maxsize=1024)
def _template_facts(source: str) -> tuple[TemplateFacts, tuple[str, ...]]:
    """A template's names and problems (cached: every run checks its templates again)."""
    try:
        facts, found = _facts(parse(source))
        compiled(source)
    except InvalidInput as exc:
        return TemplateFacts(frozenset(), frozenset()), (exc.message,)
    except TemplateError as exc:
        return TemplateFacts(frozenset(), frozenset()), (str(exc.message),)
    return facts, tuple(found)


def check_messages(messages: Sequence[PromptMessage], variables: Sequence[VariableDef] | None) -> TemplateFacts:
    """Check templates and declarations when they are saved (or before inline text renders); every problem is
    listed in one ``InvalidInput``. ``variables`` ``None``: inline text, whose names are whatever it reads."""
    problems: list[str] = []
    names: set[str] = set()
    workspace_vars: set[str] = set()
    for number, message in enumerate(messages, 1):
        if message.role not in ROLES:
            problems.append(f"message {number}: role must be one of {', '.join(ROLES)}")
        facts, found = _template_facts(message.content)
        problems += [f"message {number}: {problem}" for problem in found]
        names |= facts.names
        workspace_vars |= facts.workspace_vars
    if variables is not None:
        problems += _declaration_problems(variables, names)
    if problems:
        raise InvalidInput(_listing("the prompt template", problems))
    return TemplateFacts(frozenset(names), frozenset(workspace_vars))


def _declaration_problems(variables: Sequence[VariableDef], names: set[str]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for var in variables:
        if var.name in seen:
            problems.append(f"variable {var.name!r} is declared twice")
        seen.add(var.name)
        if var.name in RESERVED or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var.name):
            problems.append(f"{var.name!r} cannot be a variable name")
        if var.type not in VARIABLE_TYPES:
            problems.append(f"variable {var.name!r}: type must be one of {', '.join(VARIABLE_TYPES)}")
        elif var.default is not None and not _is_type(var.default, var.type):
            problems.append(f"variable {var.name!r}: the default is not of type {var.type}")
    problems += [f"{name!r} is used but not declared" for name in sorted(names - seen)]
    return problems


def _listing(what: str, problems: list[str]) -> str:
    head = f"{what} has {len(problems)} problem{'s' if len(problems) > 1 else ''}: " if len(problems) > 1 else ""
    return (head + "; ".join(problems))[:4000]


# -- values and rendering -----------------------------------------------------------------------------------------


def _is_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    return kind == "object" and isinstance(value, dict)


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def bind_values(
    variables: Sequence[VariableDef] | None, values: Mapping[str, Any], names: frozenset[str]
) -> dict[str, Any]:
    """The template's context: declared variables from ``values`` or their defaults (undeclared values are
    ignored); ``variables`` ``None`` (inline text): each name the text reads must have a value, of any type."""
    problems: list[str] = []
    context: dict[str, Any] = {}
    if variables is None:
        variables = [VariableDef(name=name, type="any") for name in sorted(names)]
    for var in variables:
        if var.name in values and values[var.name] is not None:
            value = values[var.name]
            if var.type != "any" and not _is_type(value, var.type):
                problems.append(f"{var.name}: expected {var.type}, got {_type_name(value)}")
            context[var.name] = value
        elif var.default is not None:
            context[var.name] = copy.deepcopy(var.default)
        elif var.required:
            problems.append(f"{var.name}: missing (a required {var.type if var.type != 'any' else 'value'})")
    if problems:
        raise InvalidInput(_listing("the variables", problems))
    return context


def render(
    messages: Sequence[PromptMessage], context: Mapping[str, Any], workspace_vars: Mapping[str, str] | None = None
) -> list[PromptMessage]:
    """Render every message (synchronous, bounded CPU: run it off the event loop). Raises ``InvalidInput``."""
    scope = {**context, WORKSPACE_VARS: dict(workspace_vars or {})}
    total = 0
    rendered: list[PromptMessage] = []
    with render_budget():
        for number, message in enumerate(messages, 1):
            parts: list[str] = []
            try:
                for part in compiled(message.content).generate(scope):
                    total += len(part)
                    if total > MAX_OUTPUT:
                        raise TemplateLimit(f"the rendered prompt is over {MAX_OUTPUT:,} characters")
                    parts.append(part)
            except InvalidInput as exc:
                raise InvalidInput(f"message {number}: {exc.message}") from None
            except RecursionError:
                raise InvalidInput(f"message {number} ({message.role}): recursion too deep") from None
            except SecurityError as exc:
                raise InvalidInput(f"message {number} ({message.role}): refused by the sandbox: {exc}") from None
            except Exception as exc:  # a template's own error (undefined, type, limit...): the caller's to fix
                reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                failed = f"message {number} ({message.role}) could not be rendered: {reason}"
                raise InvalidInput(failed[:2000]) from None
            rendered.append(PromptMessage(role=message.role, content="".join(parts)))
    return rendered

"""Prompt templates: Jinja2 in a sandbox that cannot read files, the environment or Python internals, with
declared typed variables and bounded work.

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

import contextvars
import copy
import functools
import re
import time
import types
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, Sequence, ValuesView
from typing import Any

import msgspec
from jinja2 import StrictUndefined, TemplateError, meta, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

from engine.errors import InvalidInput

MAX_OUTPUT = 100_000  # characters of rendered text, all messages together
MAX_VALUE = 1_000_000  # about the characters of any value a template makes (containers: deep, as text)
MAX_INT_BITS = 8192
MAX_RANGE = 10_000
MAX_WORK = 100_000  # loop iterations, calls, filters and operators per render
MAX_RENDER_S = 1.0
VARIABLE_TYPES = ("string", "number", "integer", "boolean", "array", "object")
ROLES = ("system", "user", "assistant")
WORKSPACE_VARS = "vars"
GLOBALS = ("range", "dict", "namespace", "cycler", "joiner")
RESERVED = frozenset({*GLOBALS, WORKSPACE_VARS, "loop", "caller", "varargs", "kwargs", "self", "true", "false",
                      "none", "True", "False", "None"})  # fmt: skip
_LOOP_GUARD, _CONCAT = "rl_loop_guard", "rl_concat"  # internal filters the compiler inserts


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


class TemplateLimit(Exception):
    """A template went past a limit (size, work, time)."""


# -- the budget of one render ----------------------------------------------------------------------------------


class _Budget:
    __slots__ = ("deadline", "left")

    def __init__(self) -> None:
        self.left = MAX_WORK
        self.deadline = time.monotonic() + MAX_RENDER_S


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("prompt_render_budget", default=None)


def _charge(units: int = 1) -> None:
    budget = _BUDGET.get()
    if budget is None:  # compiling, not rendering
        return
    budget.left -= units
    if budget.left < 0:
        raise TemplateLimit(f"the template does too much work (loops, calls, filters): at most {MAX_WORK:,} steps")
    if time.monotonic() > budget.deadline:
        raise TemplateLimit(f"rendering took longer than {MAX_RENDER_S:g} s")


_COLLECTIONS = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)


def _weight(value: Any, limit: int = MAX_VALUE) -> int:
    """About how many characters ``value`` would take as text, shared references counted each time (a list of
    one big string repeated is as big as its text); stops counting past ``limit``."""
    total, visits, stack = 0, 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        visits += 1
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif item is None or isinstance(item, (bool, float)):
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, (Mapping, Namespace)):
            attrs = object.__getattribute__(item, "_Namespace__attrs") if isinstance(item, Namespace) else item
            total += 2 + 4 * len(attrs)
            if total <= limit:
                stack += [*attrs.keys(), *attrs.values()]
        elif isinstance(item, _COLLECTIONS):
            total += 2 + 2 * len(item)
            if total <= limit:
                stack.extend(item)
        else:
            total += 16  # functions, ranges, generators, loop objects: short reprs
    _charge(visits // 16)
    return total


def _too_big(size: int, what: str = "a value") -> TemplateLimit:
    return TemplateLimit(f"{what} of about {size:,} characters is over the limit of {MAX_VALUE:,}")


def _check(*values: Any) -> None:
    """What an operation starts from is within the limits (charged by its size)."""
    size = _weight(values)
    if size > MAX_VALUE:
        raise _too_big(size, "an operand")
    _charge(1 + size // 256)


def _bounded(value: Any) -> Any:
    """What an operation made, if it is within the limits (charged by its size)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimit(f"an integer of {value.bit_length():,} bits is over the limit of {MAX_INT_BITS:,}")
    size = len(value) if isinstance(value, str) else _weight(value)
    if size > MAX_VALUE:
        raise _too_big(size)
    _charge(1 + size // 256)
    return value


def _finalize(value: Any) -> Any:
    """Every ``{{ ... }}`` before it becomes text: nothing over the output limit is turned into a string."""
    size = len(value) if isinstance(value, str) else _weight(value, MAX_OUTPUT)
    if size > MAX_OUTPUT:
        raise TemplateLimit(f"the rendered prompt is over {MAX_OUTPUT:,} characters")
    _charge(1 + size // 256)
    return value


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _charge()
        yield item


@pass_context
def _loop_guard(_context: Context, iterable: Any) -> Any:
    return iterable if isinstance(iterable, Undefined) else _counted(iterable)


@pass_context
def _concat(_context: Context, parts: list[Any]) -> str:
    _check(parts)
    return str(_bounded("".join(str(part) for part in parts)))


def _range(*args: int) -> range:
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise TemplateLimit(f"range() of {len(items):,} items is over the limit of {MAX_RANGE:,}")
    return items


# -- size estimates made before an operation allocates ------------------------------------------------------------

_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")


def _percent_size(fmt: str, args: Any) -> int:
    specs = _PERCENT.findall(fmt)
    if any("*" in (width, precision) for width, precision in specs):
        raise TemplateLimit("'*' widths are not allowed in % formats")
    widths = sum(int(width or 0) + int(precision or 0) for width, precision in specs)
    return len(fmt) + widths + len(specs) * _weight(args)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            sequence = isinstance(times, int) and isinstance(seq, (str, bytes, list, tuple))
            repeated = _weight(seq) * times if sequence else 0
            if repeated > MAX_VALUE:
                raise _too_big(repeated, "repeating makes a value")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimit(f"the product is over the integer limit of {MAX_INT_BITS:,} bits")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        if right * left.bit_length() > MAX_INT_BITS:
            raise TemplateLimit(f"the power is over the integer limit of {MAX_INT_BITS:,} bits")
    elif operator == "%" and isinstance(left, str):
        if _percent_size(left, right) > MAX_VALUE:
            raise _too_big(_percent_size(left, right), "formatting makes a string")
    else:
        _check(left, right)


def _replace_size(s: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(s, str) or not isinstance(old, str) or not isinstance(new, str):
        return 0
    times = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(s) + times * max(0, len(new) - len(old))


def _join_size(sep: Any, items: Sequence[Any]) -> int:
    return _weight(sep) * max(0, len(items) - 1) + _weight(list(items))


# builtin methods a template may call; the sizes of the width-like ones are checked before they allocate
_METHODS = frozenset({
    "lower", "upper", "title", "capitalize", "casefold", "swapcase", "strip", "lstrip", "rstrip", "split", "rsplit",
    "splitlines", "startswith", "endswith", "count", "find", "rfind", "index", "rindex", "partition", "rpartition",
    "removeprefix", "removesuffix", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier",
    "islower", "isnumeric", "isspace", "istitle", "isupper", "replace", "join", "center", "ljust", "rjust", "zfill",
    "get", "items", "keys", "values", "copy", "bit_length", "is_integer",
})  # fmt: skip
_METHOD_TYPES = (types.BuiltinMethodType, types.MethodWrapperType, types.MethodType)
_VALUE_TYPES = (str, bytes, int, float, list, tuple, dict, set, frozenset)


def _method_size(method: Any, args: tuple[Any, ...]) -> int:
    name, owner = method.__name__, getattr(method, "__self__", None)
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        return int(args[0])
    if name == "replace" and len(args) >= 2:
        return _replace_size(owner, *args[:3])
    return 0


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _charge()
        _check_binop(operator, left, right)
        return _bounded(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _charge()
        owner = getattr(__obj, "__self__", None)
        if isinstance(__obj, _METHOD_TYPES) and isinstance(owner, _VALUE_TYPES):  # str.center, Markup.center...
            if __obj.__name__ not in _METHODS:
                raise SecurityError(f"calling {__obj.__name__}() is not allowed in a prompt template")
            if __obj.__name__ == "join" and args:
                items = list(_counted(args[0]))
                if _join_size(owner, items) > MAX_VALUE:
                    raise _too_big(_join_size(owner, items), "joining makes a string")
                args = (items, *args[1:])
            elif _method_size(__obj, args) > MAX_VALUE:
                raise _too_big(_method_size(__obj, args), f"{__obj.__name__}() makes a string")
            _check(owner, args, kwargs)
        elif isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (_counted(args[0]), *args[1:])
        else:  # macros, dict(), namespace(), cycler()...
            _check(args, kwargs)
        return _bounded(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if super().wrap_str_format(value) is None:
            return None

        def refused(*_args: Any, **_kwargs: Any) -> str:
            raise SecurityError("str.format() is not allowed in a prompt template: use ~ or the format filter")

        return refused


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _int_arg(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str, default: int) -> int:
    value = _arg(args, kwargs, index, name, default)
    return value if isinstance(value, int) else len(value) if isinstance(value, str) else default


def _wordwrap_size(value: Any, a: Sequence[Any], k: Mapping[str, Any]) -> int:
    text, width = str(value), max(1, _int_arg(a, k, 0, "width", 79))
    wrap = _arg(a, k, 2, "wrapstring", None) or "\n"
    return len(text) + len(str(wrap)) * (len(text) // width + text.count("\n") + 1)


# filters: a safe list; ``(value, args, kwargs) -> size`` estimates run before the ones that can blow up
_FILTER_SIZES: dict[str, Callable[[Any, Sequence[Any], Mapping[str, Any]], int]] = {
    "center": lambda v, a, k: _int_arg(a, k, 0, "width", 80),
    "indent": lambda v, a, k: len(str(v)) + (str(v).count("\n") + 1) * _int_arg(a, k, 0, "width", 4),
    "format": lambda v, a, k: _percent_size(str(v), dict(k) if k else tuple(a)),
    "replace": lambda v, a, k: _replace_size(str(v), *a[:3]) if len(a) >= 2 else 0,
    "join": lambda v, a, k: _join_size(_arg(a, k, 0, "d", ""), v if isinstance(v, list) else []),
    "slice": lambda v, a, k: _int_arg(a, k, 0, "slices", 0),
    "batch": lambda v, a, k: _int_arg(a, k, 0, "linecount", 0),
    "wordwrap": _wordwrap_size,
}
_SAFE_FILTERS = (
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "join", "last",
    "length", "list", "lower", "items", "map", "min", "max", "reject", "rejectattr", "replace", "reverse", "round",
    "safe", "select", "selectattr", "slice", "sort", "string", "sum", "title", "tojson", "trim", "truncate",
    "unique", "upper", "urlencode", "wordcount", "wordwrap",
)  # fmt: skip


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    passes = 1 if hasattr(func, "jinja_pass_arg") else 0  # context, eval context or environment first
    estimate = _FILTER_SIZES.get(name)

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _charge()
        if len(args) > passes:
            value = args[passes]
            if name == "join" and not isinstance(value, (str, Undefined)):
                value = list(_counted(value))
                args = (*args[:passes], value, *args[passes + 1 :])
            _check(args[passes:], kwargs)
            if estimate is not None and estimate(value, args[passes + 1 :], kwargs) > MAX_VALUE:
                raise _too_big(estimate(value, args[passes + 1 :], kwargs), f"the {name} filter makes a value")
        return _bounded(func(*args, **kwargs))

    return guarded


def _sandbox() -> _Sandbox:
    env = _Sandbox(
        undefined=StrictUndefined, autoescape=False, optimized=False, keep_trailing_newline=True, finalize=_finalize
    )
    env.filters = {name: _guarded_filter(name, env.filters[name]) for name in _SAFE_FILTERS}
    env.filters[_LOOP_GUARD], env.filters[_CONCAT] = _loop_guard, _concat
    env.globals = {name: env.globals[name] for name in GLOBALS}
    env.globals["range"] = _range
    return env


_ENV = _sandbox()


class _Guards(NodeTransformer):
    """Every ``for`` iterates through the step counter; every ``~`` joins through the size check."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_GUARD, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(parts, _CONCAT, [], [], None, None, lineno=node.lineno)


# -- checking a template when it is saved -------------------------------------------------------------------------


class TemplateFacts(msgspec.Struct, frozen=True):
    names: frozenset[str]  # variables it reads (beyond globals and its own assignments)
    workspace_vars: frozenset[str]  # vars.NAME it reads


def _parse(source: str) -> nodes.Template:
    try:
        return _ENV.parse(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise InvalidInput(f"template syntax error{f' on line {line}' if line else ''}: {exc.message}") from None


def _facts(ast: nodes.Template) -> tuple[TemplateFacts, list[str]]:
    problems = _unsafe_nodes(ast)
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


def _unsafe_nodes(ast: nodes.Template) -> list[str]:
    problems: list[str] = []
    for node in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        tag = {"Include": "include", "Import": "import", "FromImport": "from ... import", "Extends": "extends"}
        problems.append(f"{{% {tag[type(node).__name__]} %}} is not allowed: a prompt template cannot read files")
    for attr in ast.find_all(nodes.Getattr):
        if attr.attr.startswith("_"):
            problems.append(f"attribute {attr.attr!r} is not allowed (no access to Python internals)")
    for item in ast.find_all(nodes.Getitem):
        if isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str) and item.arg.value.startswith("_"):
            problems.append(f"item {item.arg.value!r} is not allowed (no access to Python internals)")
    for used in ast.find_all(nodes.Filter):
        if used.name not in _ENV.filters or used.name in (_LOOP_GUARD, _CONCAT):
            problems.append(f"unknown filter {used.name!r}")
    return problems


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> Any:
    ast = _parse(source)
    _Guards().visit(ast)
    ast.set_environment(_ENV)
    return _ENV.from_string(ast)


@functools.lru_cache(maxsize=1024)
def _template_facts(source: str) -> tuple[TemplateFacts, tuple[str, ...]]:
    """A template's names and problems (cached: every run checks its templates again)."""
    try:
        facts, found = _facts(_parse(source))
        _compiled(source)
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
    budget_token = _BUDGET.set(_Budget())
    scope = {**context, WORKSPACE_VARS: dict(workspace_vars or {})}
    total = 0
    rendered: list[PromptMessage] = []
    try:
        for number, message in enumerate(messages, 1):
            parts: list[str] = []
            try:
                for part in _compiled(message.content).generate(scope):
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
    finally:
        _BUDGET.reset(budget_token)
    return rendered

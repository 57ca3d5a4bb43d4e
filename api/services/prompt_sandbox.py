"""The Jinja2 sandbox prompt templates compile in: safe methods, filters and globals, each step within the limits."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from api.services.prompt_limits import (
    FILTER_SIZES,
    MAX_VALUE,
    bounded,
    bounded_range,
    charge,
    check_binop,
    check_operands,
    counted,
    finalize,
    join_size,
    method_size,
    too_big,
)
from engine.errors import InvalidInput

GLOBALS = ("range", "dict", "namespace", "cycler", "joiner")
_LOOP_GUARD, _CONCAT = "rl_loop_guard", "rl_concat"  # internal filters the compiler inserts


@pass_context
def _loop_guard(_context: Context, iterable: Any) -> Any:
    return iterable if isinstance(iterable, Undefined) else counted(iterable)


@pass_context
def _concat(_context: Context, parts: list[Any]) -> str:
    check_operands(parts)
    return str(bounded("".join(str(part) for part in parts)))


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


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        charge()
        check_binop(operator, left, right)
        return bounded(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        charge()
        owner = getattr(__obj, "__self__", None)
        if isinstance(__obj, _METHOD_TYPES) and isinstance(owner, _VALUE_TYPES):  # str.center, Markup.center...
            if __obj.__name__ not in _METHODS:
                raise SecurityError(f"calling {__obj.__name__}() is not allowed in a prompt template")
            if __obj.__name__ == "join" and args:
                items = list(counted(args[0]))
                if join_size(owner, items) > MAX_VALUE:
                    raise too_big(join_size(owner, items), "joining makes a string")
                args = (items, *args[1:])
            elif method_size(__obj, args) > MAX_VALUE:
                raise too_big(method_size(__obj, args), f"{__obj.__name__}() makes a string")
            check_operands(owner, args, kwargs)
        elif isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (counted(args[0]), *args[1:])
        else:  # macros, dict(), namespace(), cycler()...
            check_operands(args, kwargs)
        return bounded(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if super().wrap_str_format(value) is None:
            return None

        def refused(*_args: Any, **_kwargs: Any) -> str:
            raise SecurityError("str.format() is not allowed in a prompt template: use ~ or the format filter")

        return refused


# filters: a safe list; the ones that can blow up are estimated (``FILTER_SIZES``) before they run
_SAFE_FILTERS = (
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "join", "last",
    "length", "list", "lower", "items", "map", "min", "max", "reject", "rejectattr", "replace", "reverse", "round",
    "safe", "select", "selectattr", "slice", "sort", "string", "sum", "title", "tojson", "trim", "truncate",
    "unique", "upper", "urlencode", "wordcount", "wordwrap",
)  # fmt: skip


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    passes = 1 if hasattr(func, "jinja_pass_arg") else 0  # context, eval context or environment first
    estimate = FILTER_SIZES.get(name)

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        charge()
        if len(args) > passes:
            value = args[passes]
            if name == "join" and not isinstance(value, (str, Undefined)):
                value = list(counted(value))
                args = (*args[:passes], value, *args[passes + 1 :])
            check_operands(args[passes:], kwargs)
            if estimate is not None and estimate(value, args[passes + 1 :], kwargs) > MAX_VALUE:
                raise too_big(estimate(value, args[passes + 1 :], kwargs), f"the {name} filter makes a value")
        return bounded(func(*args, **kwargs))

    return guarded


def _sandbox() -> _Sandbox:
    env = _Sandbox(
        undefined=StrictUndefined, autoescape=False, optimized=False, keep_trailing_newline=True, finalize=finalize
    )
    env.filters = {name: _guarded_filter(name, env.filters[name]) for name in _SAFE_FILTERS}
    env.filters[_LOOP_GUARD], env.filters[_CONCAT] = _loop_guard, _concat
    env.globals = {name: env.globals[name] for name in GLOBALS}
    env.globals["range"] = bounded_range
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


def parse(source: str) -> nodes.Template:
    try:
        return _ENV.parse(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise InvalidInput(f"template syntax error{f' on line {line}' if line else ''}: {exc.message}") from None


def unsafe_nodes(ast: nodes.Template) -> list[str]:
    """What the sandbox refuses when a template is saved: file access, ``_``-prefixed names, unknown filters."""
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
def compiled(source: str) -> Any:
    ast = parse(source)
    _Guards().visit(ast)
    ast.set_environment(_ENV)
    return _ENV.from_string(ast)

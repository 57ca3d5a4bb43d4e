"""A small, safe expression language for conditions and templates: parsed here, never ``eval``.

Grammar (lowest precedence first)::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") operand)?
    operand := literal | path | call | "[" [expr ("," expr)*] "]" | "(" expr ")"
    path    := ("input" | "steps") ("." NAME | "[" INT "]")*
    call    := ("len" | "coalesce" | "lower" | "upper") "(" [expr ("," expr)*] ")"
    literal := NUMBER | STRING ('…' or "…") | true | false | null

``and``/``or`` return one of their operands, as in Python (``a or "default"``); a path that leads nowhere is
``null``. Work is bounded by the text's size (at most ``MAX_CHARS`` characters, ``MAX_DEPTH`` nesting): there are
no loops, no attribute access beyond JSON values and no calls but the four above.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.workflows.types import of_value

MAX_CHARS = 2000
MAX_DEPTH = 32
ROOTS = ("input", "steps")
FUNCTIONS = {"len": (1, 1), "coalesce": (1, 16), "lower": (1, 1), "upper": (1, 1)}
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_LITERALS = {"true": True, "false": False, "null": None}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<string>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>==|!=|<=|>=|[<>()\[\],.]))"
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


class ExpressionError(Exception):
    """A malformed expression (at save time) or a value it cannot work with (when it runs)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- syntax tree ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class Path:
    root: str
    parts: tuple[str | int, ...]

    @property
    def text(self) -> str:
        return self.root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.parts)


@dataclass(frozen=True, slots=True)
class ListOf:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and | or
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Expr, ...]


Expr = Literal | Path | ListOf | Not | BoolOp | Compare | Call


# -- parsing -------------------------------------------------------------------------------------------------------


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            where = len(text) - len(text[pos:].lstrip())
            raise ExpressionError(f"unexpected character {text[where]!r} at {where + 1}")
        kind = match.lastgroup or "op"
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpressionError(f"expected {value!r}, the expression ended" if value else "the expression ends early")
        if value is not None and token[1] != value:
            raise ExpressionError(f"expected {value!r}, found {token[1]!r}")
        self.pos += 1
        return token

    def at(self, value: str) -> bool:
        token = self.peek()
        return token is not None and token[1] == value and token[0] in ("op", "name")

    def parse(self) -> Expr:
        if not self.tokens:
            raise ExpressionError("the expression is empty")
        expr = self.expr()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} after a complete expression")  # type: ignore[index]
        return expr

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"the expression nests deeper than {MAX_DEPTH} levels")
        try:
            return self.binary("or", lambda: self.binary("and", self.negation))
        finally:
            self.depth -= 1

    def binary(self, op: str, operand: Callable[[], Expr]) -> Expr:
        items = [operand()]
        while self.at(op):
            self.take()
            items.append(operand())
        return items[0] if len(items) == 1 else BoolOp(op, tuple(items))

    def negation(self) -> Expr:
        if self.at("not"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExpressionError(f"the expression nests deeper than {MAX_DEPTH} levels")
            try:
                return Not(self.negation())
            finally:
                self.depth -= 1
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.operand()
        token = self.peek()
        if token is None:
            return left
        if token[1] in ("==", "!=", "<", "<=", ">", ">=", "in") and token[0] in ("op", "name"):
            self.take()
            return Compare(token[1], left, self.operand())
        if token == ("name", "not") and self.peek(1) == ("name", "in"):
            self.pos += 2
            return Compare("not in", left, self.operand())
        return left

    def operand(self) -> Expr:
        kind, value = self.take()
        if kind == "number":
            return Literal(float(value) if any(c in value for c in ".eE") else int(value))
        if kind == "string":
            return Literal(re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), value[1:-1]))
        if value == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if value == "[":
            return ListOf(self.arguments("]"))
        if kind != "name":
            raise ExpressionError(f"unexpected {value!r}")
        if value in _LITERALS:
            return Literal(_LITERALS[value])
        if self.at("("):
            return self.call(value)
        if value in ROOTS:
            return self.path(value)
        if value in _KEYWORDS:
            raise ExpressionError(f"unexpected {value!r}")
        raise ExpressionError(f"unknown name {value!r}: paths start with input or steps (e.g. steps.search.output)")

    def arguments(self, close: str) -> tuple[Expr, ...]:
        items: list[Expr] = []
        while not self.at(close):
            items.append(self.expr())
            if not self.at(close):
                self.take(",")
        self.take(close)
        return tuple(items)

    def call(self, name: str) -> Expr:
        if name not in FUNCTIONS:
            raise ExpressionError(f"unknown function {name!r} (there are {', '.join(FUNCTIONS)})")
        self.take("(")
        args = self.arguments(")")
        low, high = FUNCTIONS[name]
        if not low <= len(args) <= high:
            raise ExpressionError(f"{name}() takes {low if low == high else f'{low} to {high}'} argument(s)")
        return Call(name, args)

    def path(self, root: str) -> Path:
        parts: list[str | int] = []
        while self.at(".") or self.at("["):
            if self.take()[1] == ".":
                kind, value = self.take()
                if kind != "name":
                    raise ExpressionError(f"expected a field name after '.', found {value!r}")
                parts.append(value)
            else:
                kind, value = self.take()
                if kind != "number" or not value.isdigit():
                    raise ExpressionError(f"expected an index (0, 1, …) in [], found {value!r}")
                parts.append(int(value))
                self.take("]")
        return Path(root, tuple(parts))


def parse(text: str) -> Expr:
    """Parse an expression. Raises ``ExpressionError`` saying what is wrong and where."""
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"the expression is longer than {MAX_CHARS} characters")
    return _Parser(text).parse()


def paths(expr: Expr) -> Iterator[Path]:
    """Every path the expression reads."""
    if isinstance(expr, Path):
        yield expr
    elif isinstance(expr, Not):
        yield from paths(expr.operand)
    elif isinstance(expr, Compare):
        yield from paths(expr.left)
        yield from paths(expr.right)
    elif isinstance(expr, BoolOp | ListOf | Call):
        items = expr.operands if isinstance(expr, BoolOp) else expr.items if isinstance(expr, ListOf) else expr.args
        for item in items:
            yield from paths(item)


# -- evaluation ----------------------------------------------------------------------------------------------------


def lookup(scope: Mapping[str, Any], path: Path) -> Any:
    value: Any = scope.get(path.root)
    for part in path.parts:
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and -len(value) <= part < len(value) else None
        else:
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is None:
            return None
    return value


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):  # true is not 1
        return False
    return bool(a == b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op in ("in", "not in"):
        if isinstance(b, str) and isinstance(a, str):
            found = a in b
        elif isinstance(b, list):
            found = any(_equal(a, item) for item in b)
        elif isinstance(b, Mapping):
            found = a in b
        else:
            raise ExpressionError(f"'{op}' needs a string, an array or an object on its right, not {of_value(b).kind}")
        return found if op == "in" else not found
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if not (numbers or (isinstance(a, str) and isinstance(b, str))):
        raise ExpressionError(f"cannot compare {of_value(a).kind} with {of_value(b).kind} using {op}")
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def _call(name: str, args: Sequence[Any]) -> Any:
    if name == "coalesce":
        return next((a for a in args if a is not None), None)
    value = args[0]
    if name == "len":
        if not isinstance(value, str | list | Mapping):
            raise ExpressionError(f"len() needs a string, an array or an object, not {of_value(value).kind}")
        return len(value)
    if not isinstance(value, str):
        raise ExpressionError(f"{name}() needs a string, not {of_value(value).kind}")
    return value.lower() if name == "lower" else value.upper()


def evaluate(expr: Expr, scope: Mapping[str, Any]) -> Any:
    """The expression's value over ``scope`` (``input`` and ``steps``). Raises ``ExpressionError``."""
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Path):
        return lookup(scope, expr)
    if isinstance(expr, Not):
        return not evaluate(expr.operand, scope)
    if isinstance(expr, BoolOp):
        value: Any = None
        for operand in expr.operands:
            value = evaluate(operand, scope)
            if bool(value) == (expr.op == "or"):
                return value
        return value
    if isinstance(expr, Compare):
        return _compare(expr.op, evaluate(expr.left, scope), evaluate(expr.right, scope))
    if isinstance(expr, ListOf):
        return [evaluate(item, scope) for item in expr.items]
    return _call(expr.name, [evaluate(arg, scope) for arg in expr.args])

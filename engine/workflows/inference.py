"""Save-time typing of expressions: the type an expression yields and the mismatches it provably has.

Paths are typed by the caller (``PathTyper``: ``engine.workflows.checks.Typer`` knows the input schema and each
step's output shape); this module types the operators and functions of ``engine.workflows.expressions`` over them.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.workflows.expressions import BoolOp, Compare, Expr, ListOf, Literal, Not, Path
from engine.workflows.types import ANY, BOOLEAN, INTEGER, STRING, VType, array, common, comparable, of_value, ordered

PathTyper = Callable[[Path], VType]  # reports its own problems (unknown step, missing field), returns ANY then


def infer(expr: Expr, typer: PathTyper, problems: list[str]) -> VType:
    """The expression's type; appends type mismatches it can prove to ``problems``."""
    if isinstance(expr, Literal):
        return of_value(expr.value)
    if isinstance(expr, Path):
        return typer(expr)
    if isinstance(expr, Not):
        infer(expr.operand, typer, problems)
        return BOOLEAN
    if isinstance(expr, BoolOp):
        return common([infer(operand, typer, problems) for operand in expr.operands]) or ANY
    if isinstance(expr, ListOf):
        return array(common([infer(item, typer, problems) for item in expr.items]))
    if isinstance(expr, Compare):
        _check_compare(expr, infer(expr.left, typer, problems), infer(expr.right, typer, problems), problems)
        return BOOLEAN
    args = [infer(arg, typer, problems) for arg in expr.args]
    if expr.name == "coalesce":
        return common([VType(a.kind, a.fields, a.closed, a.items) for a in args if a.kind != "null"]) or ANY
    wanted = ("string", "array", "object") if expr.name == "len" else ("string",)
    if args[0].kind not in (*wanted, "any"):
        problems.append(f"type mismatch: {expr.name}() needs {' or '.join(wanted)}, "
                        f"{_shown(expr.args[0])} is {args[0].describe()}")  # fmt: skip
    return INTEGER if expr.name == "len" else STRING


def _shown(expr: Expr) -> str:
    if isinstance(expr, Literal):
        return repr(expr.value) if expr.value is not None else "null"
    return expr.text if isinstance(expr, Path) else "the value"


def _check_compare(expr: Compare, left: VType, right: VType, problems: list[str]) -> None:
    what = f"{_shown(expr.left)} ({left.describe()}) {expr.op} {_shown(expr.right)} ({right.describe()})"
    if expr.op in ("==", "!="):
        if not comparable(left, right):
            problems.append(f"type mismatch: {what} compares different types, so it is always "
                            f"{'false' if expr.op == '==' else 'true'}")  # fmt: skip
    elif expr.op in ("in", "not in"):
        if right.kind not in ("string", "array", "object", "any"):
            problems.append(f"type mismatch: {what}: '{expr.op}' needs a string, an array or an object on its right")
        elif right.kind == "string" and left.kind not in ("string", "any"):
            problems.append(f"type mismatch: {what}: only a string can be found in a string")
    elif not ordered(left, right):
        problems.append(f"type mismatch: {what}: {expr.op} compares numbers with numbers or strings with strings")

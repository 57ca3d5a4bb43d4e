"""The limits of one prompt render: its step budget and deadline, and size checks made before anything allocates."""

from __future__ import annotations

import contextlib
import contextvars
import re
import time
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, Sequence, ValuesView
from typing import Any

from jinja2.utils import Namespace

MAX_OUTPUT = 100_000  # characters of rendered text, all messages together
MAX_VALUE = 1_000_000  # about the characters of any value a template makes (containers: deep, as text)
MAX_INT_BITS = 8192
MAX_RANGE = 10_000
MAX_WORK = 100_000  # loop iterations, calls, filters and operators per render
MAX_RENDER_S = 1.0


class TemplateLimit(Exception):
    """A template went past a limit (size, work, time)."""


# -- the budget of one render ----------------------------------------------------------------------------------


class _Budget:
    __slots__ = ("deadline", "left")

    def __init__(self) -> None:
        self.left = MAX_WORK
        self.deadline = time.monotonic() + MAX_RENDER_S


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("prompt_render_budget", default=None)


@contextlib.contextmanager
def render_budget() -> Iterator[None]:
    """A fresh budget (``MAX_WORK`` steps, ``MAX_RENDER_S``) for the rendering done inside."""
    budget_token = _BUDGET.set(_Budget())
    try:
        yield
    finally:
        _BUDGET.reset(budget_token)


def charge(units: int = 1) -> None:
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
    charge(visits // 16)
    return total


def too_big(size: int, what: str = "a value") -> TemplateLimit:
    return TemplateLimit(f"{what} of about {size:,} characters is over the limit of {MAX_VALUE:,}")


def check_operands(*values: Any) -> None:
    """What an operation starts from is within the limits (charged by its size)."""
    size = _weight(values)
    if size > MAX_VALUE:
        raise too_big(size, "an operand")
    charge(1 + size // 256)


def bounded(value: Any) -> Any:
    """What an operation made, if it is within the limits (charged by its size)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimit(f"an integer of {value.bit_length():,} bits is over the limit of {MAX_INT_BITS:,}")
    size = len(value) if isinstance(value, str) else _weight(value)
    if size > MAX_VALUE:
        raise too_big(size)
    charge(1 + size // 256)
    return value


def finalize(value: Any) -> Any:
    """Every ``{{ ... }}`` before it becomes text: nothing over the output limit is turned into a string."""
    size = len(value) if isinstance(value, str) else _weight(value, MAX_OUTPUT)
    if size > MAX_OUTPUT:
        raise TemplateLimit(f"the rendered prompt is over {MAX_OUTPUT:,} characters")
    charge(1 + size // 256)
    return value


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        charge()
        yield item


def bounded_range(*args: int) -> range:
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


def check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            sequence = isinstance(times, int) and isinstance(seq, (str, bytes, list, tuple))
            repeated = _weight(seq) * times if sequence else 0
            if repeated > MAX_VALUE:
                raise too_big(repeated, "repeating makes a value")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimit(f"the product is over the integer limit of {MAX_INT_BITS:,} bits")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        if right * left.bit_length() > MAX_INT_BITS:
            raise TemplateLimit(f"the power is over the integer limit of {MAX_INT_BITS:,} bits")
    elif operator == "%" and isinstance(left, str):
        if _percent_size(left, right) > MAX_VALUE:
            raise too_big(_percent_size(left, right), "formatting makes a string")
    else:
        check_operands(left, right)


def _replace_size(s: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(s, str) or not isinstance(old, str) or not isinstance(new, str):
        return 0
    times = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(s) + times * max(0, len(new) - len(old))


def join_size(sep: Any, items: Sequence[Any]) -> int:
    return _weight(sep) * max(0, len(items) - 1) + _weight(list(items))


def method_size(method: Any, args: tuple[Any, ...]) -> int:
    """The size a builtin method would make: the width-like ones and ``replace`` (others: 0)."""
    name, owner = method.__name__, getattr(method, "__self__", None)
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        return int(args[0])
    if name == "replace" and len(args) >= 2:
        return _replace_size(owner, *args[:3])
    return 0


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _int_arg(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str, default: int) -> int:
    value = _arg(args, kwargs, index, name, default)
    return value if isinstance(value, int) else len(value) if isinstance(value, str) else default


def _wordwrap_size(value: Any, a: Sequence[Any], k: Mapping[str, Any]) -> int:
    text, width = str(value), max(1, _int_arg(a, k, 0, "width", 79))
    wrap = _arg(a, k, 2, "wrapstring", None) or "\n"
    return len(text) + len(str(wrap)) * (len(text) // width + text.count("\n") + 1)


# ``(value, args, kwargs) -> size`` estimates that run before the filters that can blow up
FILTER_SIZES: dict[str, Callable[[Any, Sequence[Any], Mapping[str, Any]], int]] = {
    "center": lambda v, a, k: _int_arg(a, k, 0, "width", 80),
    "indent": lambda v, a, k: len(str(v)) + (str(v).count("\n") + 1) * _int_arg(a, k, 0, "width", 4),
    "format": lambda v, a, k: _percent_size(str(v), dict(k) if k else tuple(a)),
    "replace": lambda v, a, k: _replace_size(str(v), *a[:3]) if len(a) >= 2 else 0,
    "join": lambda v, a, k: join_size(_arg(a, k, 0, "d", ""), v if isinstance(v, list) else []),
    "slice": lambda v, a, k: _int_arg(a, k, 0, "slices", 0),
    "batch": lambda v, a, k: _int_arg(a, k, 0, "linecount", 0),
    "wordwrap": _wordwrap_size,
}

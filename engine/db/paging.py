"""One page of a single-table query plus the total count: what every list endpoint needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


async def fetch_page(
    session: AsyncSession,
    selected: Any,
    where: Sequence[Any],
    order_by: Sequence[Any],
    *,
    page: int,
    limit: int,
    offset: int | None = None,
) -> tuple[int, list[Any]]:
    """``(total, rows)`` for ``select(selected).where(*where)``, ordered, page ``page`` of ``limit`` rows
    (or ``limit`` rows from ``offset``, for clients that page by offset).

    ``selected`` is a mapped class or a single column; the count is taken over the same ``where``.
    """
    count = select(func.count()).select_from(selected if isinstance(selected, type) else selected.table)
    total = await session.scalar(count.where(*where)) or 0
    start = offset if offset is not None else (page - 1) * limit
    rows = await session.scalars(select(selected).where(*where).order_by(*order_by).offset(start).limit(limit))
    return int(total), list(rows)

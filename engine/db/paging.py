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
) -> tuple[int, list[Any]]:
    """``(total, rows)`` for ``select(selected).where(*where)``, ordered, page ``page`` of ``limit`` rows.

    ``selected`` is a mapped class or a single column; the count is taken over the same ``where``.
    """
    count = select(func.count()).select_from(selected if isinstance(selected, type) else selected.table)
    total = await session.scalar(count.where(*where)) or 0
    rows = await session.scalars(
        select(selected).where(*where).order_by(*order_by).offset((page - 1) * limit).limit(limit)
    )
    return int(total), list(rows)

"""The tenancy rule for rows, written once: a row of another workspace is missing, exactly like an unknown id."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from engine.errors import NotFound

Row = TypeVar("Row")


async def get_in_workspace(session: AsyncSession, model: type[Row], row_id: Any, workspace_id: str, what: str) -> Row:
    """The ``model`` row with this id in ``workspace_id``. Raises ``NotFound(what, row_id)`` otherwise."""
    row = await session.get(model, row_id)
    if row is None or getattr(row, "workspace_id", None) != workspace_id:
        raise NotFound(what, str(row_id))
    return row

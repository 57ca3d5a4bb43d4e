"""Variables of an environment: the value is write-only (``has_value`` in every response, never the value).

Values are sealed at rest (``engine.secrets.SecretBox``, bound to the row) and opened only server-side,
when a run resolves ``{{vars.NAME}}`` in its instructions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.environments import EnvironmentService
from api.services.identity import Principal
from engine.db.models import Environment, Variable, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import Conflict, InvalidInput
from engine.ids import utc
from engine.secrets import SecretBox
from ingest.views import Page

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_REFERENCE = re.compile(r"\{\{\s*vars\.([A-Za-z_][A-Za-z0-9_]{0,127})\s*\}\}")


def _context(row: Variable) -> str:
    return f"variable:{row.id}:value"


class VariableInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    environment_id: str
    name: str
    description: str
    has_value: bool  # the value itself is never shown
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Variable) -> VariableInfo:
        return cls(
            id=row.id, environment_id=row.environment_id, name=row.name, description=row.description,
            has_value=row.value_sealed is not None, created_at=utc(row.created_at), updated_at=utc(row.updated_at),
        )  # fmt: skip


class VariableFields(msgspec.Struct, kw_only=True):
    environment_id: str | None = None
    name: str | None = None
    description: str | None = None
    value: str | None = None


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``{{vars.NAME}}`` replaced by the variable's value; an unknown name is left as written."""
    return _REFERENCE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def references(text: str) -> set[str]:
    return set(_REFERENCE.findall(text))


class VariableService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], box: SecretBox, environments: EnvironmentService
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.environments = environments

    async def create(self, principal: Principal, fields: VariableFields) -> VariableInfo:
        if not fields.name or not NAME.fullmatch(fields.name):
            raise InvalidInput("a variable name is a letter or _ then letters, digits or _ (at most 128)")
        env = await self.environments.resolve(principal.workspace_id, fields.environment_id)
        row = Variable(id=new_id("var"), workspace_id=principal.workspace_id, environment_id=env.id, name=fields.name,
                       description=fields.description or "", created_at=now(), updated_at=now())
        if fields.value is not None:
            row.value_sealed = self.box.seal(fields.value, context=_context(row))
        async with self.sessions() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                raise Conflict(f"{env.name} already has a variable named {fields.name!r}") from None
        return VariableInfo.of(row)

    async def list(
        self, principal: Principal, *, environment_id: str | None, page: int, limit: int
    ) -> Page[VariableInfo]:
        where = [Variable.workspace_id == principal.workspace_id]
        if environment_id is not None:
            env = await self.environments.resolve(principal.workspace_id, environment_id)
            where.append(Variable.environment_id == env.id)
        async with self.sessions() as session:
            order = [Variable.name, Variable.id]
            total, rows = await fetch_page(session, Variable, where, order, page=page, limit=limit)
        return Page(items=[VariableInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def get(self, principal: Principal, variable_id: str) -> VariableInfo:
        async with self.sessions() as session:
            row = await get_in_workspace(session, Variable, variable_id, principal.workspace_id, "variable")
            return VariableInfo.of(row)

    async def update(self, principal: Principal, variable_id: str, fields: VariableFields) -> VariableInfo:
        async with self.sessions() as session:
            row = await get_in_workspace(session, Variable, variable_id, principal.workspace_id, "variable")
            if fields.name is not None:
                if not NAME.fullmatch(fields.name):
                    raise InvalidInput("a variable name is a letter or _ then letters, digits or _ (at most 128)")
                row.name = fields.name
            if fields.description is not None:
                row.description = fields.description
            if fields.value is not None:
                row.value_sealed = self.box.seal(fields.value, context=_context(row))
            row.updated_at = now()
            try:
                await session.commit()
            except IntegrityError:
                raise Conflict(f"this environment already has a variable named {fields.name!r}") from None
            return VariableInfo.of(row)

    async def delete(self, principal: Principal, variable_id: str) -> None:
        async with self.sessions() as session:
            await session.delete(await get_in_workspace(session, Variable, variable_id, principal.workspace_id,
                                                        "variable"))
            await session.commit()

    async def values(self, workspace_id: str, environment_id: str, names: set[str]) -> dict[str, str]:
        """The opened values of ``names`` in the environment (server-side only: for runs)."""
        if not names:
            return {}
        async with self.sessions() as session:
            env = await get_in_workspace(session, Environment, environment_id, workspace_id, "environment")
            rows = await session.scalars(select(Variable).where(
                Variable.environment_id == env.id, Variable.name.in_(sorted(names))))
            return {r.name: self.box.open(r.value_sealed, context=_context(r)) for r in rows if r.value_sealed}

    async def reseal_all(self) -> int:
        """Seal every value with the current key (after a key rotation); returns how many changed."""
        changed = 0
        async with self.sessions() as session:
            for row in await session.scalars(select(Variable).where(Variable.value_sealed.is_not(None))):
                assert row.value_sealed is not None
                resealed = self.box.reseal(row.value_sealed, context=_context(row))
                if resealed != row.value_sealed:
                    row.value_sealed, changed = resealed, changed + 1
            await session.commit()
        return changed

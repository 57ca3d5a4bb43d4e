"""Environments and their write-only variables (seed 003's admin app routes, PATCH for updates)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import Parameter
from msgspec import Meta

from api.auth import ADMIN, EDITOR, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.common import Limit, PageNo
from api.schemas import Body
from api.services.environments import EnvironmentFields, EnvironmentInfo
from api.services.identity import Principal
from api.services.variables import VariableFields, VariableInfo

EnvName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*\Z")]
Description = Annotated[str, Meta(max_length=2000)]
VarName = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*\Z")]
Value = Annotated[str, Meta(max_length=65_536)]
Ref = Annotated[str, Meta(min_length=1, max_length=64)]


class EnvironmentCreate(Body):
    name: EnvName
    description: Description = ""
    is_default: bool = False


class EnvironmentUpdate(Body):
    name: EnvName | None = None
    description: Description | None = None
    is_default: bool | None = None


class VariableCreate(Body):
    name: VarName
    value: Value  # write-only: never shown again, in any response
    environment_id: Ref | None = None  # an environment's id or name (default: the workspace's default)
    description: Description = ""


class VariableUpdate(Body):
    name: VarName | None = None
    value: Value | None = None
    description: Description | None = None


class EnvironmentController(Controller):
    path = "/api/v1/environments"
    tags = ["configuration"]

    @get("/", opt=VIEWER, summary="List environments (a workspace starts with 'production', its default)")
    async def list_environments(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[EnvironmentInfo]:
        result = await services.environments.list(principal, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/", opt=ADMIN, status_code=201, summary="Create an environment")
    async def create_environment(
        self, data: EnvironmentCreate, services: Services, principal: Principal
    ) -> Envelope[EnvironmentInfo]:
        fields = msgspec.convert(msgspec.structs.asdict(data), EnvironmentFields)
        return ok(await services.environments.create(principal, fields), "Environment created successfully")

    @get("/{environment_id:str}", opt=VIEWER, summary="Get an environment (by id or name)")
    async def get_environment(
        self, environment_id: str, services: Services, principal: Principal
    ) -> Envelope[EnvironmentInfo]:
        return ok(await services.environments.get(principal, environment_id))

    @patch("/{environment_id:str}", opt=ADMIN, summary="Rename, describe or make an environment the default")
    async def update_environment(
        self, environment_id: str, data: EnvironmentUpdate, services: Services, principal: Principal
    ) -> Envelope[EnvironmentInfo]:
        fields = msgspec.convert(msgspec.structs.asdict(data), EnvironmentFields)
        return ok(await services.environments.update(principal, environment_id, fields), "Environment updated")

    @delete("/{environment_id:str}", opt=ADMIN, status_code=200, summary="Delete an environment and its variables")
    async def delete_environment(self, environment_id: str, services: Services, principal: Principal) -> Envelope[None]:
        await services.environments.delete(principal, environment_id)
        return ok(None, "Environment deleted")


class VariableController(Controller):
    path = "/api/v1/variables"
    tags = ["configuration"]

    @get("/", opt=VIEWER, summary="List variables (has_value, never the value)")
    async def list_variables(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20,
        environment_id: Annotated[str | None, Parameter(query="environment_id", max_length=64)] = None,
    ) -> ListEnvelope[VariableInfo]:
        result = await services.variables.list(principal, environment_id=environment_id, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/", opt=EDITOR, status_code=201, summary="Create a variable (its value is write-only)")
    async def create_variable(
        self, data: VariableCreate, services: Services, principal: Principal
    ) -> Envelope[VariableInfo]:
        fields = msgspec.convert(msgspec.structs.asdict(data), VariableFields)
        return ok(await services.variables.create(principal, fields), "Variable created successfully")

    @get("/{variable_id:str}", opt=VIEWER, summary="Get a variable (has_value, never the value)")
    async def get_variable(self, variable_id: str, services: Services, principal: Principal) -> Envelope[VariableInfo]:
        return ok(await services.variables.get(principal, variable_id))

    @patch("/{variable_id:str}", opt=EDITOR, summary="Rename a variable, describe it or replace its value")
    async def update_variable(
        self, variable_id: str, data: VariableUpdate, services: Services, principal: Principal
    ) -> Envelope[VariableInfo]:
        fields = msgspec.convert(msgspec.structs.asdict(data), VariableFields)
        return ok(await services.variables.update(principal, variable_id, fields), "Variable updated")

    @delete("/{variable_id:str}", opt=EDITOR, status_code=200, summary="Delete a variable")
    async def delete_variable(self, variable_id: str, services: Services, principal: Principal) -> Envelope[None]:
        await services.variables.delete(principal, variable_id)
        return ok(None, "Variable deleted")

"""Model configurations (``/models``), system models and the providers that can be configured."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post
from msgspec import Meta

from api.auth import ADMIN, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.common import Limit, PageNo
from api.schemas import Body, ModelName
from api.services.identity import Principal
from api.services.model_configs import (
    PROVIDERS,
    ModelConfigFields,
    ModelConfigInfo,
    ModelParams,
    ProviderInfo,
    given_params,
)

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Url = Annotated[str, Meta(max_length=2000)]
Secret = Annotated[str, Meta(max_length=8192)]  # write-only; "" removes it


class ModelCreate(Body):
    name: Name
    model: ModelName  # a litellm model string, e.g. openai/gpt-4o-mini
    api_base: Url | None = None
    api_key: Secret | None = None
    client_key: Secret | None = None
    client_secret: Secret | None = None
    params: ModelParams | None = None


class ModelUpdate(Body):
    name: Name | None = None
    model: ModelName | None = None
    api_base: Url | None = None
    api_key: Secret | None = None
    client_key: Secret | None = None
    client_secret: Secret | None = None
    params: ModelParams | None = None


def _fields(data: ModelCreate | ModelUpdate) -> ModelConfigFields:
    fields = msgspec.structs.asdict(data)
    fields["params"] = None if data.params is None else given_params(data.params)
    return msgspec.convert(fields, ModelConfigFields)


class ModelController(Controller):
    path = "/api/v1/models"
    tags = ["models"]

    @get("/providers", opt=VIEWER, summary="The kinds of model that can be configured")
    async def providers(self) -> Envelope[list[ProviderInfo]]:
        return ok(PROVIDERS)

    @get("/", opt=VIEWER, summary="The workspace's model configurations (credentials as has_* flags only)")
    async def list_models(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[ModelConfigInfo]:
        result = await services.model_configs.list(principal, system=False, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/", opt=ADMIN, status_code=201, summary="Create a model configuration (credentials are write-only)")
    async def create_model(
        self, data: ModelCreate, services: Services, principal: Principal
    ) -> Envelope[ModelConfigInfo]:
        return ok(await services.model_configs.create(principal, _fields(data)), "Model created successfully")

    @get("/{model_id:str}", opt=VIEWER, summary="Get a model configuration")
    async def get_model(self, model_id: str, services: Services, principal: Principal) -> Envelope[ModelConfigInfo]:
        return ok(await services.model_configs.get(principal, model_id))

    @patch("/{model_id:str}", opt=ADMIN, summary="Update a model configuration (a credential set to '' is removed)")
    async def update_model(
        self, model_id: str, data: ModelUpdate, services: Services, principal: Principal
    ) -> Envelope[ModelConfigInfo]:
        return ok(await services.model_configs.update(principal, model_id, _fields(data)), "Model updated")

    @delete("/{model_id:str}", opt=ADMIN, status_code=200, summary="Delete a model configuration")
    async def delete_model(self, model_id: str, services: Services, principal: Principal) -> Envelope[None]:
        await services.model_configs.delete(principal, model_id)
        return ok(None, "Model deleted")


class SystemModelController(Controller):
    path = "/api/v1/system-models"
    tags = ["models"]

    @get("/visible", opt=VIEWER, summary="System models this workspace may use (names and models, no credentials)")
    async def visible(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[ModelConfigInfo]:
        result = await services.model_configs.list(principal, system=True, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @get("/", opt=ADMIN, summary="System models (system admins see their endpoints)")
    async def list_system_models(
        self, services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20
    ) -> ListEnvelope[ModelConfigInfo]:
        result = await services.model_configs.list(principal, system=True, page=page, limit=limit)
        return page_of(result.items, page=page, limit=limit, total=result.total)

    @post("/", opt=ADMIN, status_code=201, summary="Create a system model (system admins only)")
    async def create_system_model(
        self, data: ModelCreate, services: Services, principal: Principal
    ) -> Envelope[ModelConfigInfo]:
        created = await services.model_configs.create(principal, _fields(data), system=True)
        return ok(created, "Model created successfully")

    @get("/{system_model_id:str}", opt=VIEWER, summary="Get a system model")
    async def get_system_model(
        self, system_model_id: str, services: Services, principal: Principal
    ) -> Envelope[ModelConfigInfo]:
        return ok(await services.model_configs.get(principal, system_model_id, system=True))

    @patch("/{system_model_id:str}", opt=ADMIN, summary="Update a system model (system admins only)")
    async def update_system_model(
        self, system_model_id: str, data: ModelUpdate, services: Services, principal: Principal
    ) -> Envelope[ModelConfigInfo]:
        updated = await services.model_configs.update(principal, system_model_id, _fields(data), system=True)
        return ok(updated, "Model updated")

    @delete("/{system_model_id:str}", opt=ADMIN, status_code=200, summary="Delete a system model (system admins)")
    async def delete_system_model(
        self, system_model_id: str, services: Services, principal: Principal
    ) -> Envelope[None]:
        await services.model_configs.delete(principal, system_model_id, system=True)
        return ok(None, "Model deleted")

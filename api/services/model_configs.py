"""Model configurations: a litellm model string, its endpoint, write-only credentials and default parameters.

A workspace's configurations are its own; system models (``workspace_id`` NULL) are managed by system
admins (the admins of the first workspace, the one the bootstrap token opened) and usable by every workspace,
which sees their name and model but never their credentials. Credentials are sealed at rest, bound to
their row and field, shown only as ``has_api_key``/``has_client_key``/``has_client_secret``, and opened only
to call the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from engine.db.models import ModelConfig, Workspace, new_id, now
from engine.db.paging import fetch_page
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.ids import utc
from engine.llm import ModelEndpoint
from engine.net import IPNetwork, resolve_url_async
from engine.secrets import SecretBox
from ingest.views import Page

SECRET_FIELDS = ("api_key", "client_key", "client_secret")


class ProviderInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A kind of model that can be configured: its litellm prefix, what it needs and an example."""

    id: str
    name: str
    model_prefix: str
    example: str
    needs: list[str]  # fields a configuration of it must set
    optional: list[str] = []


PROVIDERS = [
    ProviderInfo(id="ragline", name="Ragline built-in (extractive, offline)", model_prefix="ragline/",
                 example="ragline/extractive", needs=[]),
    ProviderInfo(id="openai", name="OpenAI", model_prefix="openai/", example="openai/gpt-4o-mini", needs=["api_key"],
                 optional=["api_base"]),
    ProviderInfo(id="openai_compatible", name="Any OpenAI-compatible server (vLLM, LM Studio, llama.cpp)",
                 model_prefix="openai/", example="openai/my-model", needs=["api_base"], optional=["api_key"]),
    ProviderInfo(id="azure", name="Azure OpenAI", model_prefix="azure/", example="azure/my-deployment",
                 needs=["api_base"], optional=["api_key", "client_key", "client_secret"]),
    ProviderInfo(id="anthropic", name="Anthropic", model_prefix="anthropic/",
                 example="anthropic/claude-3-5-haiku-latest", needs=["api_key"]),
    ProviderInfo(id="gemini", name="Google Gemini", model_prefix="gemini/", example="gemini/gemini-1.5-flash",
                 needs=["api_key"]),
    ProviderInfo(id="mistral", name="Mistral", model_prefix="mistral/", example="mistral/mistral-small-latest",
                 needs=["api_key"]),
    ProviderInfo(id="groq", name="Groq", model_prefix="groq/", example="groq/llama-3.1-8b-instant", needs=["api_key"]),
    ProviderInfo(id="openrouter", name="OpenRouter", model_prefix="openrouter/",
                 example="openrouter/meta-llama/llama-3.1-8b-instruct", needs=["api_key"]),
    ProviderInfo(id="ollama", name="Ollama", model_prefix="ollama/", example="ollama/llama3.1", needs=["api_base"]),
]  # fmt: skip


class ModelParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Default parameters of a model call (a configuration's, or a prompt version's): each a run passes on."""

    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None  # a prompt's: with a model configuration
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None  # a prompt's: with a model configuration
    timeout_s: Annotated[float, Meta(gt=0, le=3600)] | None = None


PARAMS = ModelParams.__struct_fields__


def checked_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with known names, types and bounds (a wrong one would fail every run that uses them), without
    the unset ones. Raises ``InvalidInput``."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise InvalidInput(f"unknown model parameter {unknown[0]!r}; known: {', '.join(PARAMS)}")
    try:
        checked = msgspec.convert(dict(params), ModelParams)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"model parameters: {exc}") from None
    return given_params(checked)


def given_params(params: ModelParams) -> dict[str, Any]:
    return {name: value for name, value in msgspec.structs.asdict(params).items() if value is not None}


class ModelConfigInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    model: str
    api_base: str | None
    has_api_key: bool
    has_client_key: bool
    has_client_secret: bool
    params: dict[str, Any]
    system: bool  # a system model (every workspace may use it)
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: ModelConfig, *, show_endpoint: bool = True) -> ModelConfigInfo:
        return cls(
            id=row.id, name=row.name, model=row.model, api_base=row.api_base if show_endpoint else None,
            has_api_key=row.api_key_sealed is not None, has_client_key=row.client_key_sealed is not None,
            has_client_secret=row.client_secret_sealed is not None, params=dict(row.params or {}),
            system=row.workspace_id is None, created_at=utc(row.created_at), updated_at=utc(row.updated_at),
        )  # fmt: skip


class ModelConfigFields(msgspec.Struct, kw_only=True):
    """Editable fields; ``None`` keeps a field. A credential set to ``""`` is removed."""

    name: str | None = None
    model: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    client_key: str | None = None
    client_secret: str | None = None
    params: dict[str, Any] | None = None


def _stored_params(row: ModelConfig) -> dict[str, Any]:
    """A configuration's parameters, checked again: rows saved before they were checked could fail every run."""
    try:
        return checked_params(row.params or {})
    except InvalidInput as exc:
        raise InvalidInput(f"model configuration {row.id!r}: {exc}; correct its params") from None


def _context(row: ModelConfig, field: str) -> str:
    return f"model:{row.id}:{field}"


class ModelConfigService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], box: SecretBox, *, allowed: tuple[IPNetwork, ...] = ()
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.allowed = allowed  # networks a workspace's api_base may point into despite the SSRF guard

    # -- the caller's configurations and the system's --------------------------------------------------------

    async def is_system_admin(self, principal: Principal) -> bool:
        async with self.sessions() as session:
            first = await session.scalar(select(Workspace.id).order_by(Workspace.created_at, Workspace.id).limit(1))
        return principal.workspace_id == first and principal.has_role("admin")

    async def _row(self, session: AsyncSession, principal: Principal, config_id: str, *, system: bool) -> ModelConfig:
        row = await session.get(ModelConfig, config_id)
        owner = None if system else principal.workspace_id
        if row is None or row.workspace_id != owner:
            raise NotFound("model", config_id)
        return row

    async def list(self, principal: Principal, *, system: bool, page: int, limit: int) -> Page[ModelConfigInfo]:
        owner = ModelConfig.workspace_id.is_(None) if system else ModelConfig.workspace_id == principal.workspace_id
        async with self.sessions() as session:
            total, rows = await fetch_page(session, ModelConfig, [owner], [ModelConfig.name, ModelConfig.id],
                                           page=page, limit=limit)
        show = not system or await self.is_system_admin(principal)  # others see a system model's name, not its endpoint
        return Page(items=[ModelConfigInfo.of(r, show_endpoint=show) for r in rows], page=page, limit=limit,
                    total=total)

    async def get(self, principal: Principal, config_id: str, *, system: bool = False) -> ModelConfigInfo:
        async with self.sessions() as session:
            row = await self._row(session, principal, config_id, system=system)
        return ModelConfigInfo.of(row, show_endpoint=not system or await self.is_system_admin(principal))

    async def create(self, principal: Principal, fields: ModelConfigFields, *, system: bool = False) -> ModelConfigInfo:
        await self._check_writer(principal, system)
        if not fields.name or not fields.model:
            raise InvalidInput("a model configuration needs a name and a model (a litellm model string)")
        row = ModelConfig(id=new_id("mdl"), workspace_id=None if system else principal.workspace_id,
                          name=fields.name, model=fields.model, params={}, created_at=now(), updated_at=now())
        await self._apply(row, fields, system=system)
        async with self.sessions() as session:
            await self._check_unique(session, row)
            session.add(row)
            await session.commit()
        return ModelConfigInfo.of(row)

    async def update(
        self, principal: Principal, config_id: str, fields: ModelConfigFields, *, system: bool = False
    ) -> ModelConfigInfo:
        await self._check_writer(principal, system)
        async with self.sessions() as session:
            row = await self._row(session, principal, config_id, system=system)
            await self._apply(row, fields, system=system)
            row.updated_at = now()
            await self._check_unique(session, row)
            await session.commit()
            return ModelConfigInfo.of(row)

    async def delete(self, principal: Principal, config_id: str, *, system: bool = False) -> None:
        await self._check_writer(principal, system)
        async with self.sessions() as session:
            await session.delete(await self._row(session, principal, config_id, system=system))
            await session.commit()

    # -- what a run uses ------------------------------------------------------------------------------------

    async def endpoint(self, workspace_id: str, config_id: str) -> ModelEndpoint:
        """The model and opened credentials of a configuration the workspace may use (its own or a system one)."""
        async with self.sessions() as session:
            row = await session.get(ModelConfig, config_id)
        if row is None or row.workspace_id not in (None, workspace_id):
            raise InvalidInput(f"model configuration {config_id!r} does not exist")
        opened = {f: self._open(row, f) for f in SECRET_FIELDS}
        return ModelEndpoint(
            config_id=row.id, version=str(row.updated_at), model=row.model, api_base=row.api_base,
            api_key=opened["api_key"], client_key=opened["client_key"], client_secret=opened["client_secret"],
            params=_stored_params(row),
        )  # fmt: skip

    async def check_usable(self, workspace_id: str, config_id: str) -> str:
        """The model string of a configuration the workspace may use. Raises ``InvalidInput``."""
        async with self.sessions() as session:
            row = await session.get(ModelConfig, config_id)
        if row is None or row.workspace_id not in (None, workspace_id):
            raise InvalidInput(f"model configuration {config_id!r} does not exist")
        return row.model

    async def reseal_all(self) -> int:
        changed = 0
        async with self.sessions() as session:
            for row in await session.scalars(select(ModelConfig).where(or_(
                ModelConfig.api_key_sealed.is_not(None), ModelConfig.client_key_sealed.is_not(None),
                ModelConfig.client_secret_sealed.is_not(None),
            ))):  # fmt: skip
                for field in SECRET_FIELDS:
                    sealed = getattr(row, f"{field}_sealed")
                    if sealed is not None and not self.box.is_current(sealed):
                        setattr(row, f"{field}_sealed", self.box.reseal(sealed, context=_context(row, field)))
                        changed += 1
            await session.commit()
        return changed

    # -- internals ------------------------------------------------------------------------------------------

    def _open(self, row: ModelConfig, field: str) -> str | None:
        sealed = getattr(row, f"{field}_sealed")
        return self.box.open(sealed, context=_context(row, field)) if sealed is not None else None

    async def _check_writer(self, principal: Principal, system: bool) -> None:
        if system and not await self.is_system_admin(principal):
            raise PermissionDenied("system models are managed by the admins of the first workspace")

    async def _apply(self, row: ModelConfig, fields: ModelConfigFields, *, system: bool) -> None:
        if fields.name is not None:
            row.name = fields.name
        if fields.model is not None:
            row.model = fields.model
        if fields.api_base is not None:
            if fields.api_base and not system:  # a workspace's endpoint goes through the SSRF guard
                await resolve_url_async(fields.api_base, allowed=self.allowed)
            row.api_base = fields.api_base or None
        for field in SECRET_FIELDS:
            value = getattr(fields, field)
            if value is not None:
                setattr(row, f"{field}_sealed", self.box.seal(value, context=_context(row, field)) if value else None)
        if fields.params is not None:
            row.params = checked_params(fields.params)

    @staticmethod
    async def _check_unique(session: AsyncSession, row: ModelConfig) -> None:
        owner = ModelConfig.workspace_id.is_(None) if row.workspace_id is None else (
            ModelConfig.workspace_id == row.workspace_id)
        clash = await session.scalar(select(ModelConfig.id).where(owner, ModelConfig.name == row.name,
                                                                  ModelConfig.id != row.id).limit(1))
        if clash is not None:
            raise Conflict(f"a model configuration named {row.name!r} already exists")

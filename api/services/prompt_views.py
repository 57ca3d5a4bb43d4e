"""What the prompts API returns and accepts: a prompt, a version, its live state per environment, editable fields."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from api.services.prompt_runtime import PromptSnapshot, Variant
from api.services.prompt_templates import PromptMessage, VariableDef
from engine.db.models import Prompt, PromptDeployment, PromptVersion
from engine.ids import utc


class LiveInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A prompt in one environment: its live version and rollout."""

    prompt_id: str
    environment_id: str
    environment: str
    live_version: int | None  # None: nothing published there yet
    rollout: list[Variant] | None
    updated_by: str | None
    updated_at: datetime | None

    @classmethod
    def of(cls, deployment: PromptDeployment, environment: str) -> LiveInfo:
        return cls(
            prompt_id=deployment.prompt_id, environment_id=deployment.environment_id, environment=environment,
            live_version=deployment.version,
            rollout=msgspec.convert(deployment.rollout, list[Variant]) if deployment.rollout else None,
            updated_by=deployment.updated_by, updated_at=utc(deployment.updated_at),
        )  # fmt: skip


class PromptInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    key: str
    name: str
    description: str
    category: str
    tags: list[str]
    messages: list[PromptMessage]  # the draft
    variables: list[VariableDef]
    model_config_id: str | None
    params: dict[str, Any]
    output_format: str
    output_schema: dict[str, Any] | None
    latest_version: int  # 0: never published
    live: list[LiveInfo]  # per environment where a version is live
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Prompt, live: Sequence[LiveInfo]) -> PromptInfo:
        snapshot = PromptSnapshot.of(row)
        return cls(
            id=row.id, key=row.key, name=row.name, description=row.description, category=row.category,
            tags=list(row.tags or []), **msgspec.structs.asdict(snapshot), latest_version=row.latest_version,
            live=list(live), created_by=row.created_by, created_at=utc(row.created_at), updated_at=utc(row.updated_at),
        )  # fmt: skip


class VersionInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    prompt_id: str
    number: int
    messages: list[PromptMessage]
    variables: list[VariableDef]
    model_config_id: str | None
    params: dict[str, Any]
    output_format: str
    output_schema: dict[str, Any] | None
    note: str
    author_id: str | None
    created_at: datetime
    live_in: list[str]  # environments where it is the live version

    @classmethod
    def of(cls, row: PromptVersion, live_in: list[str]) -> VersionInfo:
        snapshot = PromptSnapshot.of(row)
        return cls(
            id=row.id, prompt_id=row.prompt_id, number=row.number, **msgspec.structs.asdict(snapshot), note=row.note,
            author_id=row.author_id, created_at=utc(row.created_at), live_in=live_in,
        )  # fmt: skip


class PromptFields(msgspec.Struct, kw_only=True):
    """Editable fields; ``None`` keeps a field (``model_config_id: ""`` removes the configuration)."""

    key: str | None = None
    name: str | None = None
    description: str | None = None
    category: str | None = None
    tags: list[str] | None = None
    messages: list[PromptMessage] | None = None
    variables: list[VariableDef] | None = None
    model_config_id: str | None = None
    params: dict[str, Any] | None = None
    output_format: str | None = None
    output_schema: dict[str, Any] | None = None

"""Environments, variables, model configurations, prompts and their versions, MCP servers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine.db.models.base import Base, now


class Environment(Base):
    """Where a run happens (dev, staging, production): variables and prompt versions are per environment."""

    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_environment_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class Variable(Base):
    """An environment's variable: its value is write-only, sealed at rest (``engine.secrets``)."""

    __tablename__ = "variables"
    __table_args__ = (UniqueConstraint("environment_id", "name", name="uq_variable_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    value_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class ModelConfig(Base):
    """A model configuration: a litellm model string, its endpoint and its write-only credentials.

    ``workspace_id`` NULL: a system model, usable by every workspace without seeing its credentials.
    """

    __tablename__ = "model_configs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    api_base: Mapped[str | None] = mapped_column(Text, nullable=True)
    api_key_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    client_key_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    client_secret_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # temperature, max_tokens, ...
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class Prompt(Base):
    """A prompt template of a workspace: its editable draft; published versions are ``PromptVersion`` rows."""

    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("workspace_id", "key", name="uq_prompt_key"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(128))  # what SDKs and agents fetch it by
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(64), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # the draft: what the next publish snapshots
    messages: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{role, content (a template)}]
    variables: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{name, type, required, default, ...}]
    model_config_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output_format: Mapped[str] = mapped_column(String(16), default="text")  # text | json
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)  # versions are numbered 1, 2, ...
    revision: Mapped[int] = mapped_column(Integer, default=0)  # bumped by every publish, rollback and rollout
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class PromptVersion(Base):
    """An immutable snapshot of a prompt's draft, numbered per prompt."""

    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "number", name="uq_prompt_version_number"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    messages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    variables: Mapped[list[Any]] = mapped_column(JSON, default=list)
    model_config_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output_format: Mapped[str] = mapped_column(String(16), default="text")
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    author_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class PromptDeployment(Base):
    """Which version of a prompt is live in one environment, and its A/B rollout there (if any)."""

    __tablename__ = "prompt_deployments"
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True)
    environment_id: Mapped[str] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    version: Mapped[int] = mapped_column(Integer)  # the live version
    rollout: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)  # [{version, weight}], weights sum to 100
    updated_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class McpServer(Base):
    """An MCP server a workspace's agents may use (streamable HTTP): its URL, write-only credentials and the
    tools it may offer (``allowed_tools``; nothing else is ever offered to a model)."""

    __tablename__ = "mcp_servers"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_mcp_server_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))  # the tools' namespace: "<name>__<tool>"
    description: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(Text)
    token_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)  # sent as "Authorization: Bearer …"
    headers_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)  # further headers, one sealed JSON object
    header_names: Mapped[list[str]] = mapped_column(JSON, default=list)  # their names (shown; the values never)
    allowed_tools: Mapped[list[str]] = mapped_column(JSON, default=list)
    timeout_s: Mapped[float] = mapped_column(Float, default=30.0)  # per tool call
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)

"""ORM tables. The files, metadata and this database are the truth; Qdrant holds derived data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.ids import new_id as new_id  # re-exported for the services that build rows
from engine.ids import now as now


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"
    # login names are unique among users with a password (revision 0004: older databases may repeat a name)
    __table_args__ = (
        Index(
            "ux_users_name_login", "name", unique=True,
            sqlite_where=text("password_hash IS NOT NULL"), postgresql_where=text("password_hash IS NOT NULL"),
        ),
    )  # fmt: skip
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Argon2id hash (argon2-cffi's encoded form, "$argon2id$..."); None: no password, API tokens only
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Workspace(Base):
    __tablename__ = "workspaces"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Membership(Base):
    __tablename__ = "memberships"
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | editor | viewer
    created_at: Mapped[float] = mapped_column(Float, default=now)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32))  # shown to users to recognise a token, never the secret
    secret_hash: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)  # caps the member's role
    kb_ids: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # limit to these knowledge bases
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class TokenAudit(Base):
    __tablename__ = "token_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[str] = mapped_column(String(40), index=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    action: Mapped[str] = mapped_column(String(32))
    actor_token_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    at: Mapped[float] = mapped_column(Float, default=now)


class KnowledgeBase(Base):
    __tablename__ = "knowledge_bases"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class File(Base):
    """One uploaded file and its ingest job (status is the durable queue)."""

    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("kb_id", "sha256", name="uq_files_kb_sha256"),
        Index("ix_files_queue", "status", "next_attempt_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    mime: Mapped[str] = mapped_column(String(100))
    file_type: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # user metadata (engine.metadata rules)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|processing|ready|failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)  # e.g. pages that failed to parse
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    pages_total: Mapped[int] = mapped_column(Integer, default=0)
    pages_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    parse_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    embed_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(32), default="simple")  # PromptRails' agent type (revision 0005)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | inactive (inactive: no runs)
    model: Mapped[str] = mapped_column(String(200))
    model_config_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # revision 0006
    instructions: Mapped[str] = mapped_column(Text, default="")
    tools: Mapped[list[str]] = mapped_column(JSON, default=list)
    kb_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_steps: Mapped[int] = mapped_column(Integer, default=8)
    max_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    timeout_s: Mapped[float] = mapped_column(Float, default=120.0)
    temperature: Mapped[float | None] = mapped_column(Float, nullable=True)
    http_fetch_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # signs run.finished callbacks (revision 0002); never shown in agent reads
    callback_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)
    # instructions from a prompt instead (revision 0007): its live version per environment, or this version
    prompt_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    prompt_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # MCP servers of the workspace whose allowed tools its runs are offered (revision 0008)
    mcp_servers: Mapped[list[str]] = mapped_column(JSON, default=list)


class ChatSession(Base):
    __tablename__ = "chat_sessions"
    __table_args__ = (UniqueConstraint("workspace_id", "user_id", "client_key", name="uq_chat_session_client_key"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    # the member who opened it (revision 0005; NULL for older sessions, which every member sees)
    user_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    # a session id the client chose (Prodgy's "my-session-01"), unique per workspace and user
    client_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # None: the built-in assistant
    title: Mapped[str] = mapped_column(String(200), default="")
    kb_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    citations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Run(Base):
    """One agent, chat or trigger run: its trace, usage and timing."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # chat | agent | trigger | prompt
    agent_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    session_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    trigger_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # who started it (revision 0005)
    environment_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)  # revision 0006
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed | cancelled
    model: Mapped[str] = mapped_column(String(200))
    input: Mapped[str] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    steps: Mapped[list[Any]] = mapped_column(JSON, default=list)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[float] = mapped_column(Float, default=now)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    prompt_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)  # revision 0007
    prompt_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)  # revision 0009
    event_depth: Mapped[int] = mapped_column(Integer, default=0)
    workflow_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)  # revision 0009
    workflow_version: Mapped[int | None] = mapped_column(Integer, nullable=True)


class RunEventRow(Base):
    """Every streamed event, stored as encoded: what is streamed is what is stored."""

    __tablename__ = "run_events"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[str] = mapped_column(Text)


class Trigger(Base):
    __tablename__ = "triggers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))  # manual | webhook | schedule
    input_template: Mapped[str] = mapped_column(Text, default="{input}")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    webhook_path: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    webhook_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cron: Mapped[str | None] = mapped_column(String(120), nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    next_fire_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_fired_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    callback_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class WebhookDelivery(Base):
    """Seen webhook delivery ids: a replay starts no second run."""

    __tablename__ = "webhook_deliveries"
    trigger_id: Mapped[str] = mapped_column(ForeignKey("triggers.id", ondelete="CASCADE"), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    run_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    received_at: Mapped[float] = mapped_column(Float, default=now)


class CallbackDelivery(Base):
    __tablename__ = "callback_deliveries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    trigger_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(32), default="run.finished")
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    log: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)


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


class AuditRecord(Base):
    """One write in a workspace: who (user, token), what (action, resource), when, redacted before/after."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    actor_user_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    actor_token_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. agent.create, variable.update
    resource_type: Mapped[str] = mapped_column(String(64), index=True)
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # {field: {"before": ..., "after": ...}}
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    at: Mapped[float] = mapped_column(Float, default=now, index=True)


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


class WorkspaceEventRow(Base):
    """One event of a workspace's log (``engine.workspace_events.WorkspaceEvent``; revision 0011). Append-only;
    the id sorts in emit order and is the cursor clients resume from."""

    __tablename__ = "workspace_events"
    __table_args__ = (
        Index("ix_workspace_events_cursor", "workspace_id", "id"),
        Index("ix_workspace_events_ts", "workspace_id", "ts"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ts: Mapped[float] = mapped_column(Float)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[str | None] = mapped_column(String(40), nullable=True)


class Automation(Base):
    """A rule: events of matching types (and condition) start an agent run or a workflow (revision 0011)."""

    __tablename__ = "automations"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_automation_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)  # patterns: "file.*", "invoice.paid"
    condition: Mapped[str | None] = mapped_column(Text, nullable=True)  # an expression over the event ("input")
    action: Mapped[str] = mapped_column(String(16))  # agent | workflow
    agent_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    workflow_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    input_template: Mapped[str] = mapped_column(Text, default="")  # an agent's input: "{payload.text}"
    input_mapping: Mapped[Any] = mapped_column(JSON, nullable=True)  # a workflow's input (a JSON template)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    fired: Mapped[int] = mapped_column(Integer, default=0)
    last_fired_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class Subscription(Base):
    """Outbound webhooks for chosen event types, signed Standard-Webhooks style (revision 0011)."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_subscription_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(128))  # whsec_…: shown at creation and rotation only
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class SubscriptionDelivery(Base):
    """One event sent to one subscription: the durable queue and its log of attempts (revision 0011)."""

    __tablename__ = "subscription_deliveries"
    __table_args__ = (Index("ix_subscription_deliveries_queue", "status", "next_attempt_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the webhook-id, the same on every retry
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    event_id: Mapped[str] = mapped_column(String(32))
    event_type: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    log: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class GoldenSet(Base):
    """A knowledge base's golden set: queries with the files or chunks that should be found, graded (revision
    0010; ``engine.evaluation.golden`` says what a query holds)."""

    __tablename__ = "golden_sets"
    __table_args__ = (UniqueConstraint("kb_id", "name", name="uq_golden_set_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    queries: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{id, query, files | chunks: {ref: grade}}]
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class Evaluation(Base):
    """One evaluation of a knowledge base: a golden set run in every search mode, with its metrics (revision 0010).

    The history per knowledge base: each row keeps the settings it ran with (``config``: embedder, chunking,
    collection), so a change of model, chunking or fusion can be compared with the rows before it.
    """

    __tablename__ = "evaluations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    golden_set_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the set may be deleted later
    golden_set_name: Mapped[str] = mapped_column(String(200), default="")
    label: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | succeeded | failed
    switch_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)  # an index switch's check
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    queries: Mapped[int] = mapped_column(Integer, default=0)
    results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # engine.evaluation.EvaluationReport
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now, index=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Workflow(Base):
    """A workflow: a name and numbered, immutable versions of its definition (revision 0009)."""

    __tablename__ = "workflows"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_workflow_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class WorkflowVersion(Base):
    """One saved definition of a workflow (engine.workflows.WorkflowSpec), as written: ``uses`` stays a reference."""

    __tablename__ = "workflow_versions"
    __table_args__ = (UniqueConstraint("workflow_id", "number", name="uq_workflow_version"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    number: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    step_refs: Mapped[list[str]] = mapped_column(JSON, default=list)  # reusable steps it uses (their usage)
    note: Mapped[str] = mapped_column(Text, default="")
    author_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class WorkflowStepDef(Base):
    """A reusable step definition (seed 003's workflow entities): saved once, named by ``uses`` in workflows."""

    __tablename__ = "workflow_steps"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_workflow_step_name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    entity_type: Mapped[str] = mapped_column(String(16), default="action")  # event | prompt | action | result
    kind: Mapped[str] = mapped_column(String(16))  # the step kind
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the step's fields but id and after
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class WorkflowRun(Base):
    """What a workflow run needs to resume after a restart: its steps as run and who started it."""

    __tablename__ = "workflow_runs"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    workflow_id: Mapped[str] = mapped_column(String(40), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)  # the spec with its steps resolved (``uses`` merged)
    principal: Mapped[dict[str, Any]] = mapped_column(JSON)  # user, token, role and knowledge-base scope
    created_at: Mapped[float] = mapped_column(Float, default=now)


class WorkflowStepResult(Base):
    """A finished step of a workflow run, stored as it finishes (a resumed run does not run it again)."""

    __tablename__ = "workflow_step_results"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)  # engine.workflows.StepRecord
    status: Mapped[str] = mapped_column(String(16))  # succeeded | failed | skipped
    finished_at: Mapped[float] = mapped_column(Float, default=now)


class KbCollection(Base):
    """A vector collection of one knowledge base's own (revision 0010): its embedder and chunking.

    ``state`` is the pointer: the knowledge base's ``live`` collection is what search reads (none: the default
    collection); ``building`` is a switch's shadow; ``retired`` waits out its grace period (``drop_after``) before
    it is dropped. No foreign key: the row outlives its knowledge base until the collection itself is dropped.
    """

    __tablename__ = "kb_collections"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    kb_id: Mapped[str] = mapped_column(String(40), index=True)
    embedder: Mapped[str] = mapped_column(String(200))  # a name of engine.embedders.EmbedderCatalog
    dim: Mapped[int] = mapped_column(Integer)
    chunk_tokens: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="building")  # building | live | retired | dropped
    drop_after: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class IndexSwitch(Base):
    """Re-embedding a knowledge base into a new collection while search answers from the live one (revision 0010).

    ``status``: building -> (evaluating ->) ready -> swapped, or cancelled / failed (the live collection untouched).
    """

    __tablename__ = "index_switches"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(40), index=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="building")
    embedder: Mapped[str] = mapped_column(String(200))
    chunk_tokens: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    source_collection: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: the default one
    target_collection: Mapped[str] = mapped_column(String(64))
    auto_swap: Mapped[bool] = mapped_column(Boolean, default=True)
    grace_s: Mapped[float] = mapped_column(Float, default=60.0)
    golden_set_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    files_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    evaluation_live_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    evaluation_shadow_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)
    swapped_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)

"""The workspace event log, automations, outbound subscriptions and their deliveries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine.db.models.base import Base, now


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

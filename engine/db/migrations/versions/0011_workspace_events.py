"""Workspace events, automations, subscriptions and their deliveries (#15)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 05:32:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspace_events",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("source", sa.String(80), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=True),
    )
    op.create_index("ix_workspace_events_cursor", "workspace_events", ["workspace_id", "id"])
    op.create_index("ix_workspace_events_ts", "workspace_events", ["workspace_id", "ts"])
    op.create_table(
        "automations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("condition", sa.Text(), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(40), nullable=True),
        sa.Column("workflow_id", sa.String(40), nullable=True),
        sa.Column("input_template", sa.Text(), nullable=False),
        sa.Column("input_mapping", sa.JSON(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("fired", sa.Integer(), nullable=False),
        sa.Column("last_fired_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("workspace_id", "name", name="uq_automation_name"),
    )
    op.create_index("ix_automations_workspace_id", "automations", ["workspace_id"])
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("workspace_id", "name", name="uq_subscription_name"),
    )
    op.create_index("ix_subscriptions_workspace_id", "subscriptions", ["workspace_id"])
    op.create_table(
        "subscription_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "subscription_id", sa.String(40), sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("log", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("delivered_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_subscription_deliveries_subscription_id", "subscription_deliveries", ["subscription_id"])
    op.create_index("ix_subscription_deliveries_workspace_id", "subscription_deliveries", ["workspace_id"])
    op.create_index("ix_subscription_deliveries_queue", "subscription_deliveries", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("subscription_deliveries")
    op.drop_table("subscriptions")
    op.drop_table("automations")
    op.drop_table("workspace_events")

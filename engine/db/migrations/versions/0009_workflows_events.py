"""Workflows, reusable workflow steps, workspace events, automations and subscriptions (filled in by #15)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("event_depth", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_runs_event_id", ["event_id"])


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_event_id")
        batch_op.drop_column("event_depth")
        batch_op.drop_column("event_id")

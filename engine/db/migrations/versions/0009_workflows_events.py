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
        batch_op.add_column(sa.Column("workflow_id", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("workflow_version", sa.Integer(), nullable=True))
        batch_op.create_index("ix_runs_workflow_id", ["workflow_id"])
    _create_workflow_tables()


def _create_workflow_tables() -> None:
    """Workflows, their versions, reusable steps, and what a workflow run needs to resume (#15, workflows)."""

    def workspace() -> sa.ForeignKey:
        return sa.ForeignKey("workspaces.id", ondelete="CASCADE")

    op.create_table(
        "workflows",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), workspace(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("workspace_id", "name", name="uq_workflow_name"),
    )
    op.create_index("ix_workflows_workspace_id", "workflows", ["workspace_id"])
    op.create_table(
        "workflow_versions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workflow_id", sa.String(40), sa.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("step_refs", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("author_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("workflow_id", "number", name="uq_workflow_version"),
    )
    op.create_index("ix_workflow_versions_workflow_id", "workflow_versions", ["workflow_id"])
    op.create_index("ix_workflow_versions_workspace_id", "workflow_versions", ["workspace_id"])
    op.create_table(
        "workflow_steps",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), workspace(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("entity_type", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("workspace_id", "name", name="uq_workflow_step_name"),
    )
    op.create_index("ix_workflow_steps_workspace_id", "workflow_steps", ["workspace_id"])
    op.create_table(
        "workflow_runs",
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("workflow_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("principal", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_workflow_runs_workspace_id", "workflow_runs", ["workspace_id"])
    op.create_index("ix_workflow_runs_workflow_id", "workflow_runs", ["workflow_id"])
    op.create_table(
        "workflow_step_results",
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("step_id", sa.String(64), primary_key=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workflow_step_results")
    for table, columns in (("workflow_runs", ("workspace_id", "workflow_id")), ("workflow_steps", ("workspace_id",)),
                           ("workflow_versions", ("workflow_id", "workspace_id")), ("workflows", ("workspace_id",))):
        for column in columns:
            op.drop_index(f"ix_{table}_{column}", table_name=table)
        op.drop_table(table)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_workflow_id")
        batch_op.drop_column("workflow_version")
        batch_op.drop_column("workflow_id")
        batch_op.drop_index("ix_runs_event_id")
        batch_op.drop_column("event_depth")
        batch_op.drop_column("event_id")

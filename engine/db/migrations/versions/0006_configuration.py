"""Environments, write-only variables, model configurations (sealed credentials), the audit log; runs
record their environment and agents may name a model configuration

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _times() -> list[sa.Column[float]]:
    return [sa.Column("created_at", sa.Float(), nullable=False), sa.Column("updated_at", sa.Float(), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        *_times(),
        sa.UniqueConstraint("workspace_id", "name", name="uq_environment_name"),
    )
    op.create_index("ix_environments_workspace_id", "environments", ["workspace_id"])
    op.create_table(
        "variables",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "environment_id", sa.String(40), sa.ForeignKey("environments.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("value_sealed", sa.Text(), nullable=True),
        *_times(),
        sa.UniqueConstraint("environment_id", "name", name="uq_variable_name"),
    )
    op.create_index("ix_variables_workspace_id", "variables", ["workspace_id"])
    op.create_index("ix_variables_environment_id", "variables", ["environment_id"])
    op.create_table(
        "model_configs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("api_base", sa.Text(), nullable=True),
        sa.Column("api_key_sealed", sa.Text(), nullable=True),
        sa.Column("client_key_sealed", sa.Text(), nullable=True),
        sa.Column("client_secret_sealed", sa.Text(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        *_times(),
    )
    op.create_index("ix_model_configs_workspace_id", "model_configs", ["workspace_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("actor_user_id", sa.String(64), nullable=True),
        sa.Column("actor_token_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
    )
    for column in ("workspace_id", "actor_user_id", "action", "resource_type", "resource_id", "at"):
        op.create_index(f"ix_audit_log_{column}", "audit_log", [column])
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("environment_id", sa.String(40), nullable=True))
        batch_op.create_index("ix_runs_environment_id", ["environment_id"])
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_config_id", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("model_config_id")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_environment_id")
        batch_op.drop_column("environment_id")
    op.drop_table("audit_log")
    op.drop_table("model_configs")
    op.drop_table("variables")
    op.drop_table("environments")

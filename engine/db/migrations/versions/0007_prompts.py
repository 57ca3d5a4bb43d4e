"""Prompts: versioned prompt templates per workspace, their live version per environment, rollouts

Agents may take their instructions from a prompt (``prompt_key``, optional ``prompt_version`` pin); runs record
the prompt and version they used.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _snapshot() -> list[sa.Column[object]]:
    """The columns a draft and its published versions share."""
    return [
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("model_config_id", sa.String(40), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("output_format", sa.String(16), nullable=False),
        sa.Column("output_schema", sa.JSON(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "prompts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        *_snapshot(),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("workspace_id", "key", name="uq_prompt_key"),
    )
    op.create_index("ix_prompts_workspace_id", "prompts", ["workspace_id"])
    op.create_table(
        "prompt_versions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("prompt_id", sa.String(40), sa.ForeignKey("prompts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        *_snapshot(),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("author_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("prompt_id", "number", name="uq_prompt_version_number"),
    )
    op.create_index("ix_prompt_versions_workspace_id", "prompt_versions", ["workspace_id"])
    op.create_index("ix_prompt_versions_prompt_id", "prompt_versions", ["prompt_id"])
    op.create_table(
        "prompt_deployments",
        sa.Column("prompt_id", sa.String(40), sa.ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "environment_id", sa.String(40), sa.ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rollout", sa.JSON(), nullable=True),
        sa.Column("updated_by", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    for column in ("workspace_id", "environment_id"):
        op.create_index(f"ix_prompt_deployments_{column}", "prompt_deployments", [column])
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prompt_key", sa.String(128), nullable=True))
        batch_op.add_column(sa.Column("prompt_version", sa.Integer(), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prompt_id", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("prompt_version", sa.Integer(), nullable=True))
        batch_op.create_index("ix_runs_prompt_id", ["prompt_id"])


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_prompt_id")
        batch_op.drop_column("prompt_version")
        batch_op.drop_column("prompt_id")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("prompt_version")
        batch_op.drop_column("prompt_key")
    op.drop_table("prompt_deployments")
    op.drop_table("prompt_versions")
    op.drop_table("prompts")

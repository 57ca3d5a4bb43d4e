"""Per-knowledge-base golden sets and evaluations, embedder per knowledge base and collection switches (#19)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 05:31:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "golden_sets",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column(
            "kb_id", sa.String(40), sa.ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("queries", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("kb_id", "name", name="uq_golden_set_name"),
    )
    op.create_index("ix_golden_sets_workspace_id", "golden_sets", ["workspace_id"])
    op.create_index("ix_golden_sets_kb_id", "golden_sets", ["kb_id"])
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column(
            "kb_id", sa.String(40), sa.ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("golden_set_id", sa.String(40), nullable=True),
        sa.Column("golden_set_name", sa.String(200), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("switch_id", sa.String(40), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("queries", sa.Integer(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_evaluations_workspace_id", "evaluations", ["workspace_id"])
    op.create_index("ix_evaluations_kb_id", "evaluations", ["kb_id"])
    op.create_index("ix_evaluations_switch_id", "evaluations", ["switch_id"])
    op.create_index("ix_evaluations_created_at", "evaluations", ["created_at"])
    op.create_table(
        "kb_collections",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("kb_id", sa.String(40), nullable=False),
        sa.Column("embedder", sa.String(200), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("chunk_tokens", sa.Integer(), nullable=False),
        sa.Column("chunk_overlap", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("drop_after", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_kb_collections_workspace_id", "kb_collections", ["workspace_id"])
    op.create_index("ix_kb_collections_kb_id", "kb_collections", ["kb_id"])
    op.create_table(
        "index_switches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column(
            "kb_id", sa.String(40), sa.ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("embedder", sa.String(200), nullable=False),
        sa.Column("chunk_tokens", sa.Integer(), nullable=False),
        sa.Column("chunk_overlap", sa.Integer(), nullable=False),
        sa.Column("source_collection", sa.String(64), nullable=True),
        sa.Column("target_collection", sa.String(64), nullable=False),
        sa.Column("auto_swap", sa.Boolean(), nullable=False),
        sa.Column("grace_s", sa.Float(), nullable=False),
        sa.Column("golden_set_id", sa.String(40), nullable=True),
        sa.Column("files_total", sa.Integer(), nullable=False),
        sa.Column("files_done", sa.Integer(), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("evaluation_live_id", sa.String(40), nullable=True),
        sa.Column("evaluation_shadow_id", sa.String(40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("swapped_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_index_switches_workspace_id", "index_switches", ["workspace_id"])
    op.create_index("ix_index_switches_kb_id", "index_switches", ["kb_id"])


def downgrade() -> None:
    for table in ("index_switches", "kb_collections"):
        op.drop_index(f"ix_{table}_kb_id", table_name=table)
        op.drop_index(f"ix_{table}_workspace_id", table_name=table)
        op.drop_table(table)
    for index in ("created_at", "switch_id", "kb_id", "workspace_id"):
        op.drop_index(f"ix_evaluations_{index}", table_name="evaluations")
    op.drop_table("evaluations")
    op.drop_index("ix_golden_sets_kb_id", table_name="golden_sets")
    op.drop_index("ix_golden_sets_workspace_id", table_name="golden_sets")
    op.drop_table("golden_sets")

"""Prompts: versioned prompt templates per workspace, their live version per environment, rollouts

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 20:00:00
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # tables added with the prompts feature


def downgrade() -> None:
    pass

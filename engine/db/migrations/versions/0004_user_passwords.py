"""users.password_hash: an Argon2id hash for username/password login; names of users with a password are unique

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 12:00:00

The unique index is partial (users with a password only): databases from before this revision may hold
several users of one name (``ragline token create`` names every user it makes ``cli-user`` by default),
and login needs one user per name. SQLite and PostgreSQL both have partial indexes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_HAS_PASSWORD = sa.text("password_hash IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.String(length=255), nullable=True))
        batch_op.create_index(
            "ux_users_name_login", ["name"], unique=True, sqlite_where=_HAS_PASSWORD, postgresql_where=_HAS_PASSWORD
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ux_users_name_login")
        batch_op.drop_column("password_hash")

"""Agents' type and status; chat sessions and runs know who started them; client-chosen session ids;
run events renamed to the PromptRails grammar (content/thinking carry ``content``, execution carries
``execution_id``)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 18:00:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_EVENTS = sa.table(
    "run_events", sa.column("run_id", sa.String), sa.column("seq", sa.Integer), sa.column("type", sa.String),
    sa.column("data", sa.Text),
)
_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("type", sa.String(32), nullable=False, server_default="simple"))
        batch_op.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="active"))
    with op.batch_alter_table("chat_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("client_key", sa.String(200), nullable=True))
        batch_op.create_index("ix_chat_sessions_user_id", ["user_id"])
        batch_op.create_unique_constraint("uq_chat_session_client_key", ["workspace_id", "user_id", "client_key"])
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(40), nullable=True))
    _rename_event_fields()


def _rename_event_fields() -> None:
    """Stored events of earlier runs in the current grammar, so replays decode (one pass, in batches)."""
    bind = op.get_bind()
    kinds = ("content", "thinking", "execution")
    last: tuple[str, int] = ("", 0)
    while True:
        rows = bind.execute(
            sa.select(_EVENTS.c.run_id, _EVENTS.c.seq, _EVENTS.c.data)
            .where(_EVENTS.c.type.in_(kinds), sa.tuple_(_EVENTS.c.run_id, _EVENTS.c.seq) > sa.tuple_(*last))
            .order_by(_EVENTS.c.run_id, _EVENTS.c.seq)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        for run_id, seq, data in rows:
            event = json.loads(data)
            if "text" in event and "content" not in event:
                event["content"] = event.pop("text")
            if event.get("type") == "execution":
                event.setdefault("execution_id", run_id)
            bind.execute(
                sa.update(_EVENTS)
                .where(_EVENTS.c.run_id == run_id, _EVENTS.c.seq == seq)
                .values(data=json.dumps(event, separators=(",", ":")))
            )
        last = (rows[-1][0], rows[-1][1])


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("user_id")
    with op.batch_alter_table("chat_sessions", schema=None) as batch_op:
        batch_op.drop_constraint("uq_chat_session_client_key", type_="unique")
        batch_op.drop_index("ix_chat_sessions_user_id")
        batch_op.drop_column("client_key")
        batch_op.drop_column("user_id")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("status")
        batch_op.drop_column("type")

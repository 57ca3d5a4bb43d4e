"""Alembic environment: runs on the connection handed in by ``engine.db.session.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from engine.db.models import Base

config = context.config
connection = config.attributes.get("connection")


def _run(conn: Connection) -> None:
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # `alembic revision --autogenerate` from the command line
    url = config.get_main_option("sqlalchemy.url") or "sqlite:///ragline-autogen.db"
    with create_engine(url).connect() as conn:
        _run(conn)

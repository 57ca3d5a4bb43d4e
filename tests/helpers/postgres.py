"""Opt-in PostgreSQL for the API and ingest-worker tests.

``RAGLINE_TEST_DATABASE_URL`` names a server (any database on it). Each app the tests start then gets a
database of its own, created here, so those suites run unchanged against PostgreSQL (``DATABASE_URL``'s
path) instead of SQLite. Unset, the tests use SQLite as always.
"""

from __future__ import annotations

import asyncio
import os
import secrets

from sqlalchemy.engine import make_url

from tests.helpers.schema_template import in_a_thread, postgres_template

SERVER_URL = os.environ.get("RAGLINE_TEST_DATABASE_URL", "")


def fresh_database(server_url: str = SERVER_URL, *, migrated: bool = False) -> str:
    """Create a database on the server and return its SQLAlchemy URL: empty, or ``migrated`` (a copy of a
    template the real migrations made, ``tests/helpers/schema_template.py``)."""
    import asyncpg

    url = make_url(server_url)

    def create(name: str, template: str | None) -> None:
        async def run() -> None:
            connection = await asyncpg.connect(
                host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
            )
            try:
                await connection.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
            finally:
                await connection.close()

        in_a_thread(lambda: asyncio.run(run()))

    name = f"ragline_test_{secrets.token_hex(6)}"
    create(name, postgres_template(server_url, create) if migrated else None)
    return url.set(database=name).render_as_string(hide_password=False)

"""Opt-in PostgreSQL for the API and ingest-worker tests.

``RAGLINE_TEST_DATABASE_URL`` names a server (any database on it). Each app the tests start then gets a
database of its own, created here, so those suites run unchanged against PostgreSQL (``DATABASE_URL``'s
path) instead of SQLite. Unset, the tests use SQLite as always.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading

from sqlalchemy.engine import make_url

SERVER_URL = os.environ.get("RAGLINE_TEST_DATABASE_URL", "")


def fresh_database(server_url: str = SERVER_URL) -> str:
    """Create an empty database on the server and return its SQLAlchemy URL."""
    import asyncpg

    url = make_url(server_url)
    name = f"ragline_test_{secrets.token_hex(6)}"

    async def create() -> None:
        connection = await asyncpg.connect(
            host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
        )
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    # a thread of its own: callers may already run inside an event loop
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(create())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return url.set(database=name).render_as_string(hide_password=False)

"""A migrated, empty metadata database, made once per test process and copied for every app a test starts.

Alembic's eleven revisions cost every app start ~0.3 s on SQLite and more on PostgreSQL; the API suites start
~450 apps on each. The template is made by the app's own ``migrate`` (the real migrations, from nothing), and the
app still runs ``migrate`` at each start: it finds the schema at head. ``tests/engine/test_migrations.py`` keeps
migrating from empty and from the 0.1 release on its own databases. On SQLite the copy is a file copy; on
PostgreSQL it is ``CREATE DATABASE ... TEMPLATE``, which copies the template's files on the server.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.db.session import create_engine, migrate

_lock = threading.Lock()
_sqlite_template: Path | None = None
_postgres_templates: dict[str, str] = {}  # server URL -> template database name


def in_a_thread(work: Callable[[], Any]) -> Any:
    """``work()`` in a thread of its own: callers may already run inside an event loop."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


async def _migrated(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def copy_sqlite_template(database: Path) -> None:
    """Write a migrated, empty SQLite database at ``database`` (its folder is created)."""
    global _sqlite_template
    with _lock:
        if _sqlite_template is None:
            folder = tempfile.mkdtemp(prefix="ragline-schema-")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            made = Path(folder) / "ragline.db"
            in_a_thread(lambda: asyncio.run(_migrated(f"sqlite+aiosqlite:///{made}")))
            with sqlite3.connect(made) as connection:  # everything in the main file: it is copied alone
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            _sqlite_template = made
    database.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template, database)


def postgres_template(server_url: str, create: Callable[[str, str | None], None]) -> str:
    """The name of this process's migrated template database on the server (made on first use).

    ``create(name, template)`` creates a database, from ``template`` when given. One template per process:
    PostgreSQL refuses to copy a template while another session is connected to it.
    """
    from sqlalchemy.engine import make_url

    with _lock:
        name = _postgres_templates.get(server_url)
        if name is None:
            name = f"ragline_template_{os.getpid()}_{secrets.token_hex(3)}"
            create(name, None)
            url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
            in_a_thread(lambda: asyncio.run(_migrated(url)))
            _postgres_templates[server_url] = name
    return name

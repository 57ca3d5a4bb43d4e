"""Fixtures for agent runtime tests: a real SQLite run store, a RunManager, the scripted server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import engine  # noqa: F401  (offline environment before litellm is imported)
from engine.db.run_store import SqlRunStore
from engine.db.session import create_engine, migrate, session_factory
from engine.runs import RunManager
from tests.helpers.openai_server import Server, serve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlRunStore]:
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}")
    await migrate(db)
    yield SqlRunStore(session_factory(db))
    await db.dispose()


@pytest.fixture
async def manager(store: SqlRunStore) -> AsyncIterator[RunManager]:
    async with RunManager(store, flush_interval_s=0.05) as runs:
        yield runs
    assert runs.running() == []


@pytest.fixture
def server() -> Iterator[Server]:
    """A scripted OpenAI-compatible server; tests fill ``server.script`` / ``server.default``."""
    yield from serve()

"""Migrations: the migrated schema is exactly the models', and a database made by the 0.1 release upgrades."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import text

from engine.db.models import Base
from engine.db.run_store import SqlRunStore
from engine.db.session import MIGRATIONS_DIR, create_engine, migrate, session_factory
from engine.events import ContentEvent, ExecutionEvent, ThinkingEvent

pytestmark = pytest.mark.anyio
RELEASE_HEAD = "0003"  # the schema of the last release (Ragline 0.1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _upgrade_to(revision: str):  # type: ignore[no-untyped-def]
    def upgrade(connection):  # type: ignore[no-untyped-def]
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return upgrade


async def test_the_migrated_schema_is_the_models(tmp_path: Path) -> None:
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    await migrate(db)
    async with db.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    await db.dispose()
    assert diff == []


async def test_a_release_database_upgrades_and_its_runs_replay(tmp_path: Path) -> None:
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'release.db'}")
    async with db.begin() as conn:
        await conn.run_sync(_upgrade_to(RELEASE_HEAD))
        old_events = [
            {"type": "execution", "run_id": "run_1", "seq": 1, "ts": 1.0, "agent": "a", "model": "m"},
            {"type": "thinking", "run_id": "run_1", "seq": 2, "ts": 2.0, "text": "hmm"},
            {"type": "content", "run_id": "run_1", "seq": 3, "ts": 3.0, "text": "Hello"},
        ]
        await conn.execute(text(
            "INSERT INTO runs (id, workspace_id, kind, status, model, input, steps, prompt_tokens, completion_tokens,"
            " total_tokens, started_at) VALUES ('run_1', 'ws_1', 'agent', 'succeeded', 'm', 'hi', '[]', 0, 0, 0, 1.0)"
        ))  # fmt: skip
        for event in old_events:
            await conn.execute(
                text("INSERT INTO run_events (run_id, seq, type, data) VALUES (:r, :s, :t, :d)"),
                {"r": "run_1", "s": event["seq"], "t": event["type"], "d": json.dumps(event)},
            )
    await migrate(db)  # to head
    events = await SqlRunStore(session_factory(db)).list_events("run_1")
    record = await SqlRunStore(session_factory(db)).get_run("run_1")
    async with db.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    await db.dispose()
    assert diff == []
    assert isinstance(events[0], ExecutionEvent) and events[0].execution_id == "run_1"
    assert isinstance(events[1], ThinkingEvent) and events[1].content == "hmm"
    assert isinstance(events[2], ContentEvent) and events[2].content == "Hello"
    assert record is not None and record.status == "succeeded" and record.user_id is None

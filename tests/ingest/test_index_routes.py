"""The routes cache of ``SqlIndexDirectory`` (the pointer search reads): a pointer changed while a search was
reading the old one must not leave that old reading cached.

Found by ``tests/e2e/test_embedder_switch.py`` under load in CI: a search began reading the routes, the switch
swapped and dropped the cache, then that search stored what it had read (the old collection) and later searches
answered from it for up to ``ttl_s``. Here the interleaving is forced: the first reading is held after its select
until the swap has committed and invalidated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.db.models import KbCollection
from engine.db.session import create_engine, migrate, session_factory
from engine.embedders import EmbedderCatalog
from engine.stores.collections import EdgeCollections
from ingest.indexes import SqlIndexDirectory
from tests.api.conftest import make_settings

WORKSPACE, KB = "ws-routes", "kb-routes"


class HeldSessions:
    """Real sessions; while ``hold`` is set, a session signals ``read`` after its queries and waits for ``go``."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.hold = False
        self.read, self.go = asyncio.Event(), asyncio.Event()

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        held = self.hold
        async with self.sessions() as session:
            yield session
        if held:
            self.read.set()
            await self.go.wait()


async def _swap_during_a_reading(tmp_path: Path, embedder: Any) -> tuple[Any, Any]:
    settings = make_settings(tmp_path / "data")
    engine = create_engine(settings.resolved_database_url)
    await migrate(engine)
    sessions = session_factory(engine)
    held = HeldSessions(sessions)
    directory = SqlIndexDirectory(
        held, EdgeCollections(tmp_path / "collections"), EmbedderCatalog(settings, embedder),  # type: ignore[arg-type]
        ttl_s=60.0,  # long enough that only the invalidation can bring the new pointer
    )  # fmt: skip
    try:
        held.hold = True
        reading = asyncio.create_task(directory.routes(WORKSPACE))
        await asyncio.wait_for(held.read.wait(), 30)  # it read: no live collection of the knowledge base's own
        held.hold = False
        async with sessions() as session:  # the swap, as ingest.switch does it: commit, then invalidate
            session.add(KbCollection(name="kb-routes-new", workspace_id=WORKSPACE, kb_id=KB, embedder=settings.embedder,
                                     dim=embedder.dim, chunk_tokens=200, chunk_overlap=40, state="live"))  # fmt: skip
            await session.commit()
        directory.invalidate(WORKSPACE)
        held.go.set()
        stale = await asyncio.wait_for(reading, 30)
        fresh = await directory.routes(WORKSPACE)
        return stale, fresh
    finally:
        await engine.dispose()


def test_a_reading_begun_before_a_swap_is_not_cached(tmp_path: Path, embedder: Any) -> None:
    stale, fresh = asyncio.run(_swap_during_a_reading(tmp_path, embedder))
    assert KB not in stale.dedicated  # the reading that began before the swap saw the old pointer (that is allowed)
    assert fresh.dedicated[KB].collection == "kb-routes-new"  # the next search reads the new one

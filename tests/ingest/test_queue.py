"""The ingest queue's status moves on a real database (SQLite here, PostgreSQL with RAGLINE_TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import io

from sqlalchemy import delete, select

from engine.db.models import File
from ingest import queue
from tests.ingest.test_worker import open_workspace


def test_finish_marks_files_in_flight_ready_and_skips_the_deleted(tmp_path, embedder):
    async def scenario() -> None:
        services, ws, kb = await open_workspace(tmp_path, embedder)
        try:
            for n in range(4):
                text = f"# Note {n}\n\nBody number {n}.".encode()
                await services.knowledge.add_file(ws, kb, filename=f"{n}.md", source=io.BytesIO(text))
            async with services.sessions() as session:
                claimed = await queue.claim(session, 4)
                await session.commit()
            small, large, gone, untouched = [job.id for job in claimed]
            async with services.sessions() as session:  # deleted while it was embedded
                await session.execute(delete(File).where(File.id == gone))
                await session.commit()
            final = [  # a file that fit one batch carries its progress columns; a long one wrote them before
                (small, {"error": None, "chunks_done": 1, "embed_ms": 5.0, "pages_total": 1, "chunks_total": 1,
                         "warnings": ["short"], "parse_ms": 0.5}),
                (large, {"error": None, "chunks_done": 40, "embed_ms": 9.0}),
                (gone, {"error": None, "chunks_done": 2, "embed_ms": 1.0}),
            ]  # fmt: skip
            async with services.sessions() as session:
                ready = await queue.finish(session, final)
                await session.commit()
            assert ready == {small, large}
            async with services.sessions() as session:
                rows = {row.id: row for row in await session.scalars(select(File))}
            assert (rows[small].status, rows[small].chunks_done, rows[small].warnings) == ("ready", 1, ["short"])
            assert (rows[small].pages_total, rows[small].parse_ms, rows[small].embed_ms) == (1, 0.5, 5.0)
            assert (rows[large].status, rows[large].chunks_done, rows[large].embed_ms) == ("ready", 40, 9.0)
            assert rows[untouched].status == "processing" and gone not in rows
            async with services.sessions() as session:
                assert await queue.finish(session, []) == set()
        finally:
            await services.close()

    asyncio.run(scenario())

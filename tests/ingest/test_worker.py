"""The ingest worker against real parts: dedup under concurrency, delete during ingest, retry, orphans."""

from __future__ import annotations

import asyncio
import io

import pytest

from api.container import Services, open_services
from engine.settings import Settings
from engine.types import SearchFilters
from ingest.views import FileInfo
from tests.helpers import postgres
from tests.helpers.pdfs import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.slow


async def open_workspace(tmp_path, embedder) -> tuple[Services, str, str]:
    database = {"database_url": postgres.fresh_database()} if postgres.SERVER_URL else {}
    settings = Settings.from_env({}, data_dir=tmp_path / "data", torch_threads=1, **database)
    services = await open_services(settings, embedder=embedder)
    issued = await services.access.bootstrap()
    assert issued is not None
    principal = await services.access.authenticate(issued.secret)
    kb = await services.knowledge.create_kb(principal.workspace_id, "kb")
    return services, principal.workspace_id, kb.id


async def until_embedding(services: Services, ws: str, file_id: str) -> FileInfo:
    """The file once the worker has chunked it and started embedding (its last state after ~12 s if never)."""
    for _ in range(600):
        current = await services.knowledge.get_file(ws, file_id)
        if current.status == "processing" and current.chunks_total:
            break
        await asyncio.sleep(0.02)
    return current


def test_concurrent_duplicate_uploads_yield_one_file_and_one_chunk_set(tmp_path, embedder):
    async def scenario() -> None:
        services, ws, kb = await open_workspace(tmp_path, embedder)
        try:
            data = make_pdf(HANDBOOK_PAGES)
            infos = await asyncio.gather(
                *(
                    services.knowledge.add_file(ws, kb, filename=f"copy{n}.pdf", source=io.BytesIO(data))
                    for n in range(6)
                )
            )
            assert len({i.id for i in infos}) == 1
            assert sum(not i.duplicate for i in infos) == 1
            await services.worker.drain(timeout_s=120)
            info = await services.knowledge.get_file(ws, infos[0].id)
            assert info.status == "ready"
            assert await services.store.count(SearchFilters(workspace_id=ws)) == info.chunks_total
        finally:
            await services.close()

    asyncio.run(scenario())


def test_delete_during_ingest_wins(tmp_path, embedder):
    async def scenario() -> None:
        services, ws, kb = await open_workspace(tmp_path, embedder)
        try:
            long_doc = make_pdf([" ".join(HANDBOOK_PAGES) * 6] * 12)
            info = await services.knowledge.add_file(ws, kb, filename="long.pdf", source=io.BytesIO(long_doc))
            services.worker.start()
            await until_embedding(services, ws, info.id)
            await services.knowledge.delete_file(ws, info.id)
            await asyncio.sleep(0.5)
            await services.worker.stop()
            await services.worker.drain(timeout_s=60)
            assert await services.store.count(SearchFilters(workspace_id=ws)) == 0
            assert info.id not in await services.store.file_ids()
            assert not services.knowledge.blobs.exists(info.sha256)
        finally:
            await services.close()

    asyncio.run(scenario())


def test_recover_removes_points_of_unknown_files(tmp_path, embedder):
    async def scenario() -> None:
        services, ws, kb = await open_workspace(tmp_path, embedder)
        try:
            info = await services.knowledge.add_file(
                ws, kb, filename="a.md", source=io.BytesIO(b"# Title\n\nSome text here.")
            )
            await services.worker.drain(timeout_s=60)
            # simulate a crash between the row delete and the point delete
            async with services.sessions() as session:
                from engine.db.models import File

                await session.execute(File.__table__.delete().where(File.id == info.id))
                await session.commit()
            assert info.id in await services.store.file_ids()
            await services.worker.recover()
            assert info.id not in await services.store.file_ids()
        finally:
            await services.close()

    asyncio.run(scenario())


def test_labels_edited_during_ingest_reach_every_chunk(tmp_path, embedder):
    async def scenario() -> None:
        services, ws, kb = await open_workspace(tmp_path, embedder)
        try:
            long_doc = make_pdf([" ".join(HANDBOOK_PAGES) * 6] * 12)
            info = await services.knowledge.add_file(
                ws, kb, filename="long.pdf", source=io.BytesIO(long_doc), tags=["draft"], metadata={"stage": "draft"}
            )
            services.worker.start()
            current = await until_embedding(services, ws, info.id)
            assert current.chunks_done < current.chunks_total  # the edit lands while batches are still embedded
            await services.knowledge.update_file(ws, info.id, kb, tags=["final"], metadata={"stage": "final"})
            await services.worker.drain(timeout_s=120)
            await services.worker.stop()
            done = await services.knowledge.get_file(ws, info.id)
            assert done.status == "ready" and (done.tags, done.metadata) == (["final"], {"stage": "final"})
            final = SearchFilters(workspace_id=ws, tags=("final",), metadata=(("stage", ("final",)),))
            assert await services.store.count(final) == done.chunks_total
            assert await services.store.count(SearchFilters(workspace_id=ws, tags=("draft",))) == 0
        finally:
            await services.close()

    asyncio.run(scenario())


def test_files_that_upload_while_the_embedder_has_work_ahead_are_claimed_together(tmp_path, embedder):
    """A file's upload wakes the worker, but it claims no more files while a long one keeps the model busy: the
    files that arrive meanwhile are marked processing by one statement per CLAIM_AT_ONCE, not one each."""
    from sqlalchemy import select

    from engine.db.models import File
    from ingest.claims import CLAIM_AT_ONCE
    from ingest.worker import AHEAD_CHUNKS

    async def scenario() -> None:
        services, ws, kb = await open_workspace(tmp_path, embedder)
        try:
            long_doc = "\n\n".join(f"## Part {n}\n\n{' '.join(HANDBOOK_PAGES) * 6}" for n in range(60))
            info = await services.knowledge.add_file(ws, kb, filename="long.md", source=io.BytesIO(long_doc.encode()))
            services.worker.start()
            current = await until_embedding(services, ws, info.id)
            assert current.chunks_total >= 2 * AHEAD_CHUNKS  # long enough to keep the claims waiting
            small = [
                await services.knowledge.add_file(
                    ws, kb, filename=f"note{n}.md", source=io.BytesIO(f"# Note {n}\n\nReminder number {n}.".encode())
                )
                for n in range(2 * CLAIM_AT_ONCE)
            ]
            await services.worker.drain(timeout_s=300)
            async with services.sessions() as session:
                rows = (await session.execute(select(File.status, File.started_at).where(
                    File.id.in_([f.id for f in small])))).all()  # fmt: skip
            assert [status for status, _ in rows] == ["ready"] * len(small)
            claims = {started_at for _, started_at in rows}  # one claim statement stamps its files alike
            assert len(claims) <= 3, f"{len(small)} streamed files took {len(claims)} claims"
        finally:
            await services.worker.stop()
            await services.close()

    asyncio.run(scenario())

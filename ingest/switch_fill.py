"""An index switch's background work: filling its shadow index, catching it up and evaluating it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.db.models import File, GoldenSet, IndexSwitch, now
from engine.errors import EngineError
from engine.ports import SparseEncoder
from engine.retrieval import Retriever
from engine.routing import Index
from ingest.blobs import BlobStore
from ingest.indexes import embed_file_into, file_job
from ingest.prepare import IngestConfig

ACTIVE = ("building", "evaluating", "ready")
MAX_CATCH_UP_ROUNDS = 20
SETTLE_TIMEOUT_S = 600.0  # how long a swap waits for files still being ingested into the old index

# (workspace_id, kb_id, golden_set_id, retriever or None for the live index, switch_id, config) -> evaluation id
Evaluate = Callable[[str, str, str, Retriever | None, str, dict[str, Any]], Awaitable[str]]


class SwitchCancelled(Exception):
    """The switch was cancelled (or its row is gone): its run stops and drops the shadow."""


async def load_switch(sessions: async_sessionmaker[AsyncSession], switch_id: str) -> IndexSwitch:
    async with sessions() as session:
        row = await session.get(IndexSwitch, switch_id)
        if row is None:
            raise SwitchCancelled()
        session.expunge(row)
        return row


async def update_switch(
    sessions: async_sessionmaker[AsyncSession], switch_id: str, states: tuple[str, ...], **values: Any
) -> bool:
    """Update the switch if it is still in one of ``states`` (False: it was cancelled meanwhile)."""
    async with sessions() as session:
        result = await session.execute(
            update(IndexSwitch)
            .where(IndexSwitch.id == switch_id, IndexSwitch.status.in_(states))
            .values(updated_at=now(), **values)
        )
        await session.commit()
        return getattr(result, "rowcount", 0) == 1


class ShadowFiller:
    """Embeds a knowledge base's files into a switch's shadow index, keeps it caught up and evaluates it.

    ``check(switch_id)`` raises ``SwitchCancelled`` once the switch is cancelled; the fill calls it between files
    and between a file's batches.
    """

    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], blobs: BlobStore, sparse: SparseEncoder,
        config: IngestConfig, retriever: Retriever, check: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.blobs = blobs
        self.sparse = sparse
        self.config = config
        self.retriever = retriever
        self.check = check

    async def fill(self, row: IndexSwitch, index: Index) -> None:
        """Embed every ready file into the shadow, then catch up with uploads and deletions until none is left."""
        for _ in range(MAX_CATCH_UP_ROUNDS):
            files, gone, present = await self._difference(row.kb_id, index)
            if not files and not gone:
                return
            for file_id in gone:
                self.check(row.id)
                await index.store.delete_file(row.workspace_id, file_id)
            await update_switch(self.sessions, row.id, ACTIVE, files_total=len(present - gone) + len(files))
            for file in files:
                self.check(row.id)
                await self._embed(row.id, index, file)
        raise EngineError("the knowledge base kept changing: the switch could not catch up")

    async def catch_up_after_swap(self, workspace_id: str, kb_id: str, index: Index, swapped_at: float) -> None:
        """Once the files still being ingested into the old index are done (or after ``SETTLE_TIMEOUT_S``), bring
        the swapped-in index level with the knowledge base."""
        deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            async with self.sessions() as session:
                busy = await session.scalar(
                    select(File.id)
                    .where(File.kb_id == kb_id, File.status == "processing", File.started_at <= swapped_at)
                    .limit(1)
                )
            if busy is None:
                break
            await asyncio.sleep(0.5)
        missing, gone, _ = await self._difference(kb_id, index)
        for file_id in gone:
            await index.store.delete_file(workspace_id, file_id)
        for file in missing:
            await embed_file_into(index, file_job(file), blobs=self.blobs, sparse=self.sparse, config=self.config)

    async def _difference(self, kb_id: str, index: Index) -> tuple[list[File], set[str], set[str]]:
        """Ready files the index lacks, files it holds that the knowledge base no longer has, and what it holds."""
        async with self.sessions() as session:
            ready = list(await session.scalars(
                select(File).where(File.kb_id == kb_id, File.status == "ready").order_by(File.created_at, File.id)
            ))  # fmt: skip
            for file in ready:
                session.expunge(file)
        present = await index.store.file_ids()
        ids = {file.id for file in ready}
        return [file for file in ready if file.id not in present], present - ids, present

    async def _embed(self, switch_id: str, index: Index, file: File) -> None:
        chunks_before = (await load_switch(self.sessions, switch_id)).chunks_done

        async def progress(written: int, total: int) -> None:
            self.check(switch_id)  # a cancel stops a long file between two batches
            await update_switch(self.sessions, switch_id, ACTIVE, chunks_done=chunks_before + written)

        try:
            await embed_file_into(
                index, file_job(file), blobs=self.blobs, sparse=self.sparse, config=self.config, on_batch=progress
            )
        except SwitchCancelled:
            raise
        except Exception as exc:  # one file the new settings cannot take (e.g. too many chunks) fails the switch
            reason = exc.message if isinstance(exc, EngineError) else str(exc)
            raise EngineError(f"file {file.name!r} ({file.id}) cannot be re-embedded: {reason}") from exc
        async with self.sessions() as session:
            await session.execute(update(IndexSwitch).where(IndexSwitch.id == switch_id).values(
                files_done=IndexSwitch.files_done + 1, updated_at=now()))  # fmt: skip
            await session.commit()

    async def evaluate(self, row: IndexSwitch, index: Index, evaluate: Evaluate | None) -> None:
        """Evaluate the live and the shadow index on the golden set (the switch's, else the knowledge base's
        newest); nothing without an evaluator or a golden set."""
        if evaluate is None:
            return
        golden = row.golden_set_id
        if golden is None:
            async with self.sessions() as session:
                golden = await session.scalar(
                    select(GoldenSet.id).where(GoldenSet.kb_id == row.kb_id)
                    .order_by(GoldenSet.created_at.desc()).limit(1)
                )  # fmt: skip
        if golden is None:
            return
        self.check(row.id)
        await update_switch(self.sessions, row.id, ("building",), status="evaluating")
        shadow = Retriever(
            embedder=index.embedder, sparse=self.sparse, store=index.store, max_top_k=self.retriever.max_top_k,
            reranker=self.retriever.reranker,
        )  # fmt: skip
        shadow_config = {
            "collection": index.collection,
            "embedder": index.embedder_name,
            "model": index.embedder.name,
            "chunk_tokens": index.chunk_tokens,
            "chunk_overlap": index.chunk_overlap,
            "role": "shadow",
        }
        live_id = await evaluate(row.workspace_id, row.kb_id, golden, None, row.id, {})
        self.check(row.id)
        shadow_id = await evaluate(row.workspace_id, row.kb_id, golden, shadow, row.id, shadow_config)
        await update_switch(self.sessions, row.id, ACTIVE, evaluation_live_id=live_id, evaluation_shadow_id=shadow_id,
                            golden_set_id=golden)  # fmt: skip

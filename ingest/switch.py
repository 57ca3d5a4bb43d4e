"""Switching a knowledge base's embedder or chunking without downtime.

1. ``start``: a new collection (state ``building``, the shadow) is made for the new embedder and chunking.
2. A background task embeds every ready file of the knowledge base from its stored original into the shadow,
   while search keeps answering from the live collection; progress is on the switch row. Files uploaded or
   deleted meanwhile are caught up until the shadow matches the knowledge base.
3. With a golden set (the one named, else the knowledge base's newest), the evaluation runs on the live and on
   the shadow collection and both are stored (``evaluation_live_id``, ``evaluation_shadow_id``).
4. The swap (at once with ``auto_swap``, else on ``POST .../swap``) flips the pointers in one transaction:
   the shadow becomes ``live``, the old collection ``retired`` (on a Qdrant server the knowledge base's alias
   moves too, atomically). Files that were still being ingested into the old index are caught up once they are
   done. After ``grace_s`` the old collection is dropped (or, for the default collection, the knowledge base's
   points in it are deleted): searches that read the old pointer just before the swap still complete.

A cancel or a failure drops the shadow and leaves the live collection and its pointer untouched. A restart
during a switch fails it the same way (``recover``).

The background work on the shadow (fill, catch-up, evaluation) is ``ingest.switch_fill.ShadowFiller``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid

import anyio.to_thread
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.db.models import GoldenSet, IndexSwitch, KbCollection, KnowledgeBase, new_id, now
from engine.db.scoped import get_in_workspace
from engine.errors import Conflict, EngineError, InvalidInput, NotFound
from engine.ports import SparseEncoder, VectorStore
from engine.retrieval import Retriever
from engine.routing import Index
from ingest.blobs import BlobStore
from ingest.indexes import SqlIndexDirectory
from ingest.prepare import IngestConfig
from ingest.switch_fill import ACTIVE, Evaluate, ShadowFiller, SwitchCancelled, load_switch, update_switch
from ingest.switch_views import IndexInfo, SwitchInfo

log = logging.getLogger("ragline.ingest")


class IndexSwitcher:
    """Starts, runs, swaps and cancels index switches; one at a time per knowledge base."""

    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], directory: SqlIndexDirectory, blobs: BlobStore,
        sparse: SparseEncoder, config: IngestConfig, default_store: VectorStore, default_embedder: str,
        default_dim: int, retriever: Retriever, alias_prefix: str, evaluate: Evaluate | None = None,
    ) -> None:  # fmt: skip
        self.sessions = sessions
        self.directory = directory
        self.config = config
        self.default_store = default_store
        self.default_embedder = default_embedder
        self.default_dim = default_dim
        self.alias_prefix = alias_prefix
        self.evaluate = evaluate
        self._filler = ShadowFiller(
            sessions=sessions, blobs=blobs, sparse=sparse, config=config, retriever=retriever, check=self._check
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._follow_ups: set[asyncio.Task[None]] = set()
        self._cancel: dict[str, asyncio.Event] = {}

    # -- reading -----------------------------------------------------------------------------------

    async def index_info(self, workspace_id: str, kb_id: str) -> IndexInfo:
        async with self.sessions() as session:
            await _kb(session, workspace_id, kb_id)
        live = await self.directory.live_index(workspace_id, kb_id)
        if live is None:
            return IndexInfo(
                kb_id=kb_id, collection="default", embedder=self.default_embedder, dim=self.default_dim,
                chunk_tokens=self.config.chunk_tokens, chunk_overlap=self.config.chunk_overlap,
            )  # fmt: skip
        return IndexInfo(
            kb_id=kb_id, collection=live.collection, embedder=live.embedder_name, dim=live.embedder.dim,
            chunk_tokens=live.chunk_tokens, chunk_overlap=live.chunk_overlap,
        )  # fmt: skip

    async def get(self, workspace_id: str, kb_id: str, switch_id: str) -> SwitchInfo:
        async with self.sessions() as session:
            return SwitchInfo.of(await _switch(session, workspace_id, kb_id, switch_id))

    async def list_switches(self, workspace_id: str, kb_id: str) -> list[SwitchInfo]:
        async with self.sessions() as session:
            await _kb(session, workspace_id, kb_id)
            rows = await session.scalars(
                select(IndexSwitch).where(IndexSwitch.kb_id == kb_id, IndexSwitch.workspace_id == workspace_id)
                .order_by(IndexSwitch.created_at.desc()).limit(50)
            )  # fmt: skip
            return [SwitchInfo.of(row) for row in rows]

    # -- start -------------------------------------------------------------------------------------

    async def start(
        self, workspace_id: str, kb_id: str, *, embedder: str | None = None, chunk_tokens: int | None = None,
        chunk_overlap: int | None = None, golden_set_id: str | None = None, auto_swap: bool = True,
        grace_s: float = 60.0, actor: str | None = None,
    ) -> SwitchInfo:  # fmt: skip
        """Start re-embedding the knowledge base into a new collection (the unchanged settings are kept)."""
        current = await self.index_info(workspace_id, kb_id)
        name = embedder or current.embedder
        tokens = chunk_tokens or current.chunk_tokens
        overlap = current.chunk_overlap if chunk_overlap is None else chunk_overlap
        if tokens < 16 or not 0 <= overlap < tokens // 2:
            raise InvalidInput("chunk_tokens must be at least 16 and chunk_overlap below half of it")
        model = await anyio.to_thread.run_sync(self.directory.embedders.get, name)  # InvalidInput when unknown
        if (name, tokens, overlap) == (current.embedder, current.chunk_tokens, current.chunk_overlap):
            raise InvalidInput("the knowledge base already uses this embedder and chunking")
        target = f"kb-{kb_id.rsplit('_', 1)[-1][:16]}-{uuid.uuid4().hex[:8]}".lower()
        async with self.sessions() as session:
            await _kb(session, workspace_id, kb_id)
            busy = await session.scalar(select(IndexSwitch.id).where(
                IndexSwitch.kb_id == kb_id, IndexSwitch.status.in_(ACTIVE)))  # fmt: skip
            if busy is not None:
                raise Conflict(f"switch {busy} of this knowledge base is still running: cancel it first")
            if golden_set_id is not None:
                await get_in_workspace(session, GoldenSet, golden_set_id, workspace_id, "golden set")
            session.add(KbCollection(
                name=target, workspace_id=workspace_id, kb_id=kb_id, embedder=name, dim=model.dim,
                chunk_tokens=tokens, chunk_overlap=overlap, state="building",
            ))  # fmt: skip
            row = IndexSwitch(
                id=new_id("sw"), workspace_id=workspace_id, kb_id=kb_id, status="building", embedder=name,
                chunk_tokens=tokens, chunk_overlap=overlap,
                source_collection=None if current.collection == "default" else current.collection,
                target_collection=target, auto_swap=auto_swap, grace_s=grace_s, golden_set_id=golden_set_id,
                created_by=actor,
            )  # fmt: skip
            session.add(row)
            await session.commit()
            info = SwitchInfo.of(row)
        self._cancel[row.id] = asyncio.Event()
        # a fresh context: the background work is no part of the request that started it (its audit scope)
        task = asyncio.get_running_loop().create_task(self._run(row.id), context=contextvars.Context())
        self._tasks[row.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(row.id, None))
        return info

    # -- the background run --------------------------------------------------------------------------

    async def _run(self, switch_id: str) -> None:
        try:
            row = await load_switch(self.sessions, switch_id)
            index = await self._target(row)
            await self._filler.fill(row, index)
            await self._filler.evaluate(row, index, self.evaluate)
            if not await update_switch(self.sessions, switch_id, ("building", "evaluating"), status="ready"):
                raise SwitchCancelled()
            if row.auto_swap:
                await self.swap(row.workspace_id, row.kb_id, switch_id)
        except SwitchCancelled:
            await self._abandon(switch_id, "cancelled", None)
        except asyncio.CancelledError:  # the server stops: the switch fails, the live collection stays
            with contextlib.suppress(Exception):
                await asyncio.shield(self._abandon(switch_id, "failed", "interrupted: the server stopped"))
            raise
        except Exception as exc:
            log.exception("index switch %s failed", switch_id)
            reason = exc.message if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            await self._abandon(switch_id, "failed", reason[:2000])

    async def _target(self, row: IndexSwitch) -> Index:
        async with self.sessions() as session:
            collection = await session.get(KbCollection, row.target_collection)
            assert collection is not None
            return await self.directory.index(collection)

    def _check(self, switch_id: str) -> None:
        event = self._cancel.get(switch_id)
        if event is None or event.is_set():
            raise SwitchCancelled()

    # -- swap, cancel, failure -----------------------------------------------------------------------

    async def swap(self, workspace_id: str, kb_id: str, switch_id: str) -> SwitchInfo:
        """Make the shadow live in one transaction; the old index is dropped after the grace period."""
        async with self.sessions() as session:
            row = await _switch(session, workspace_id, kb_id, switch_id)
            if row.status != "ready":
                raise Conflict(f"the switch is {row.status}: only a ready switch can be swapped")
            swapped_at = now()
            await session.execute(update(KbCollection).where(
                KbCollection.kb_id == kb_id, KbCollection.state == "live",
            ).values(state="retired", drop_after=swapped_at + row.grace_s, updated_at=swapped_at))  # fmt: skip
            await session.execute(update(KbCollection).where(KbCollection.name == row.target_collection).values(
                state="live", updated_at=swapped_at))  # fmt: skip
            row.status, row.swapped_at, row.finished_at, row.updated_at = "swapped", swapped_at, now(), now()
            await session.commit()
            info = SwitchInfo.of(row)
            source, grace = row.source_collection, row.grace_s
        self.directory.invalidate(workspace_id)
        alias = f"{self.alias_prefix}-kb-{_suffix(kb_id)}"
        with contextlib.suppress(Exception):  # the alias is for operators; the pointer above is what search reads
            await self.directory.collections.point_alias(alias, info.target_collection)
        self._cancel.pop(switch_id, None)
        follow_up = self._after_swap(workspace_id, kb_id, switch_id, swapped_at, source, grace)
        task = asyncio.get_running_loop().create_task(follow_up, context=contextvars.Context())
        self._follow_ups.add(task)
        task.add_done_callback(self._follow_ups.discard)
        return info

    async def _after_swap(
        self, workspace_id: str, kb_id: str, switch_id: str, swapped_at: float, source: str | None, grace: float
    ) -> None:
        """Catch up with the knowledge base (files still being ingested into the old index once they are done, and
        whatever changed since the shadow was filled), then drop the old index after the grace period."""
        try:
            index = await self._target(await load_switch(self.sessions, switch_id))
            await self._filler.catch_up_after_swap(workspace_id, kb_id, index, swapped_at)
            await asyncio.sleep(max(0.0, swapped_at + grace - now()))
            if source is None:
                await self.default_store.delete_kb(workspace_id, kb_id)
            await self.directory.drop_expired()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("after swap %s: the old index is dropped at the next start", switch_id)

    async def cancel(self, workspace_id: str, kb_id: str, switch_id: str) -> SwitchInfo:
        """Stop a switch that has not swapped yet: its collection is dropped, the live one is untouched."""
        async with self.sessions() as session:
            row = await _switch(session, workspace_id, kb_id, switch_id)
            if row.status not in ACTIVE:
                raise Conflict(f"the switch is {row.status} already")
            row.status, row.finished_at, row.updated_at = "cancelled", now(), now()
            await session.commit()
        event = self._cancel.get(switch_id)
        if event is not None:
            event.set()
        task = self._tasks.get(switch_id)
        if task is not None:  # it stops at its next step (at most one file's batch later) and drops the shadow
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(task)
        else:  # waiting for a manual swap: nothing runs
            await self._abandon(switch_id, "cancelled", None)
        return await self.get(workspace_id, kb_id, switch_id)

    async def _abandon(self, switch_id: str, status: str, error: str | None) -> None:
        """End a switch that did not swap (if it is still running) and drop its collection."""
        self._cancel.pop(switch_id, None)
        async with self.sessions() as session:
            row = await session.get(IndexSwitch, switch_id)
            if row is None or row.status == "swapped":
                return
            if row.status in ACTIVE:
                row.status, row.error, row.finished_at, row.updated_at = status, error, now(), now()
            target = row.target_collection
            await session.commit()
        await self.directory.drop(target)

    # -- lifecycle -----------------------------------------------------------------------------------

    async def recover(self) -> None:
        """At start: switches a stop interrupted fail (their collections dropped); old indexes whose grace period
        is over go, and so do the default collection's points of knowledge bases that have their own (a stop during
        a grace period left them)."""
        async with self.sessions() as session:
            stale = list(await session.scalars(select(IndexSwitch).where(IndexSwitch.status.in_(ACTIVE))))
            ids = [row.id for row in stale if row.status != "ready"]
            moved = (await session.execute(select(KbCollection.workspace_id, KbCollection.kb_id).where(
                KbCollection.state == "live"))).all()  # fmt: skip
        for switch_id in ids:
            await self._abandon(switch_id, "failed", "interrupted: the server stopped during the switch")
        with contextlib.suppress(Exception):
            await self.directory.drop_expired()
            for workspace_id, kb_id in moved:
                await self.default_store.delete_kb(workspace_id, kb_id)

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *self._follow_ups]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _suffix(kb_id: str) -> str:
    return kb_id.rsplit("_", 1)[-1][:24].lower()


async def _kb(session: AsyncSession, workspace_id: str, kb_id: str) -> KnowledgeBase:
    return await get_in_workspace(session, KnowledgeBase, kb_id, workspace_id, "knowledge base")


async def _switch(session: AsyncSession, workspace_id: str, kb_id: str, switch_id: str) -> IndexSwitch:
    row = await get_in_workspace(session, IndexSwitch, switch_id, workspace_id, "index switch")
    if row.kb_id != kb_id:
        raise NotFound("index switch", switch_id)
    return row

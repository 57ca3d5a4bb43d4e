"""Services: everything the handlers need, built once from Settings (the composition root's parts)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.services.access import AccessService
from api.services.agents import AgentService
from api.services.chat import ChatService
from api.services.executions import ExecutionService
from engine.db.run_store import SqlRunStore
from engine.db.session import create_engine, migrate, session_factory
from engine.embedders import create_embedder
from engine.ports import Embedder, SparseEncoder, VectorStore
from engine.rerank import load_reranker
from engine.retrieval import Retriever
from engine.runs import FinishedHook, RunManager
from engine.settings import Settings
from engine.sparse import Bm25SparseEncoder
from engine.stores import create_vector_store
from ingest.blobs import BlobStore
from ingest.service import KnowledgeService
from ingest.worker import IngestConfig, IngestWorker

log = logging.getLogger("ragline")


@dataclass
class Services:
    settings: Settings
    db: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    embedder: Embedder
    sparse: SparseEncoder
    store: VectorStore
    retriever: Retriever
    knowledge: KnowledgeService
    worker: IngestWorker
    access: AccessService
    runs: RunManager
    agents: AgentService
    chat: ChatService
    executions: ExecutionService
    hook_factories: list[Callable[[str | None, str | None], list[FinishedHook]]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    _runs_open: bool = False

    def run_hooks(self, agent_id: str | None = None, trigger_id: str | None = None) -> list[FinishedHook]:
        """Hooks to call when a run of this agent/trigger ends (e.g. signed outbound callbacks)."""
        return [hook for factory in self.hook_factories for hook in factory(agent_id, trigger_id)]

    async def open_runs(self) -> None:
        """Start the run manager (its task group lives until ``close``); close what a crash left running."""
        await SqlRunStore(self.sessions).fail_unfinished()
        await self.runs.__aenter__()
        self._runs_open = True

    async def close(self) -> None:
        if self._runs_open:
            self._runs_open = False
            await self.runs.__aexit__(None, None, None)
        await self.worker.stop()
        await self.store.close()
        await self.db.dispose()


async def build_services(settings: Settings, *, embedder: Embedder | None = None) -> Services:
    """Open the database (migrated), the vector store, the embedder and the ingest worker."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = create_engine(settings.resolved_database_url)
    await migrate(db)
    sessions = session_factory(db)
    embedder = embedder or create_embedder(settings)
    sparse = Bm25SparseEncoder()
    store = create_vector_store(settings, embedder.dim)
    blobs = BlobStore(settings.files_dir)
    worker = IngestWorker(
        sessions=sessions,
        blobs=blobs,
        store=store,
        embedder=embedder,
        sparse=sparse,
        config=IngestConfig(
            chunk_tokens=settings.chunk_tokens,
            chunk_overlap=settings.chunk_overlap,
            max_chunks=settings.max_chunks_per_file,
            parse_timeout_s=settings.parse_timeout_s,
            parse_memory_mb=settings.parse_memory_mb,
            max_attempts=settings.ingest_max_attempts,
            workers=settings.ingest_workers,
        ),
    )
    knowledge = KnowledgeService(
        sessions=sessions, blobs=blobs, store=store, max_upload_bytes=settings.max_upload_bytes, notify=worker.notify
    )
    retriever = Retriever(
        embedder=embedder, sparse=sparse, store=store, max_top_k=settings.search_max_top_k,
        reranker=load_reranker(settings),
    )
    runs = RunManager(SqlRunStore(sessions), max_running_per_workspace=settings.max_runs_per_workspace)
    agents = AgentService(sessions=sessions, runs=runs, retriever=retriever, settings=settings)
    return Services(
        settings=settings,
        db=db,
        sessions=sessions,
        embedder=embedder,
        sparse=sparse,
        store=store,
        retriever=retriever,
        knowledge=knowledge,
        worker=worker,
        access=AccessService(sessions),
        runs=runs,
        agents=agents,
        chat=ChatService(sessions=sessions, agents=agents),
        executions=ExecutionService(sessions=sessions, runs=runs),
    )

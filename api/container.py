"""The composition root: ``build_services`` wires every service once, as typed fields.

This is the one module that imports adapters (``engine.embedders``, ``engine.stores``, ``engine.models``,
``engine.rerankers``); import-linter enforces it. Nothing writes into ``Services`` after it is built. A test
swaps a port by handing ``build_services`` its own adapter (``embedder=``, ``models=``), never by patching.

Lifecycle: ``build_services`` does no I/O beyond opening the embedded store; ``migrate`` readies the
database; ``start`` starts the background work a server runs (ingest worker, runs, callbacks,
schedules) and ``close`` stops all of it, leaving what is pending in the database for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import engine.db.audit  # noqa: F401  (registers the audit log's flush listener)
from api.auth import TokenBucket
from api.services.access import AccessService
from api.services.agents import AgentService
from api.services.audit_log import AuditLogService
from api.services.automations import AutomationService
from api.services.background import Wakeup
from api.services.callbacks import CallbackService
from api.services.chat import ChatService
from api.services.environments import EnvironmentService
from api.services.evaluations import EvaluationService
from api.services.events import EventService
from api.services.events_hooks import RunEvents, file_listener
from api.services.executions import ExecutionService
from api.services.indexing import index_describe, switch_evaluator
from api.services.live_feed import LiveFeed
from api.services.mcp_servers import McpServerService
from api.services.model_configs import ModelConfigService
from api.services.principals import PrincipalCache
from api.services.prompts import PromptService
from api.services.run_stats import RunStatsService
from api.services.runs import RunService
from api.services.scheduler import Scheduler
from api.services.subscriptions import SubscriptionService
from api.services.triggers import TriggerService
from api.services.users import UserService
from api.services.variables import VariableService
from api.services.workflows import WorkflowService
from api.services.workspaces import WorkspaceService
from engine.db.run_store import SqlRunStore
from engine.db.session import create_engine, migrate, session_factory
from engine.embedders import EmbedderCatalog, create_embedder, create_sparse_encoder
from engine.models import cost_usd, create_model_provider
from engine.net import allowed_networks
from engine.ports import Embedder, IndexBuilder, ModelProvider, SparseEncoder, VectorStore
from engine.rerankers import load_reranker
from engine.retrieval import Retriever
from engine.routing import RoutedRetriever, RoutedVectorStore
from engine.runs import RunManager
from engine.secrets import load_secret_box
from engine.settings import Settings
from engine.stores import create_vector_store
from engine.stores.collections import collections_for
from ingest.blobs import BlobStore
from ingest.indexes import DedicatedIngest, SqlIndexDirectory
from ingest.prepare import IngestConfig
from ingest.preview import IngestPreviewer
from ingest.service import KnowledgeService
from ingest.switch import IndexSwitcher
from ingest.worker import IngestWorker

log = logging.getLogger("ragline")


@dataclass(frozen=True, eq=False)
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
    workspaces: WorkspaceService
    request_limiter: TokenBucket
    models: ModelProvider
    run_store: SqlRunStore
    run_manager: RunManager
    agents: AgentService
    callbacks: CallbackService
    runs: RunService
    chat: ChatService
    executions: ExecutionService
    triggers: TriggerService
    scheduler: Scheduler
    users: UserService
    environments: EnvironmentService
    variables: VariableService
    model_configs: ModelConfigService
    audit_log: AuditLogService
    run_stats: RunStatsService
    prompts: PromptService
    mcp_servers: McpServerService
    principals: PrincipalCache  # requests' callers for a few seconds; any auth write empties it
    events: EventService
    automations: AutomationService
    subscriptions: SubscriptionService
    live: LiveFeed
    evaluations: EvaluationService
    indexes: SqlIndexDirectory
    switches: IndexSwitcher
    previews: IngestPreviewer
    workflows: WorkflowService
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack, repr=False)

    @property
    def index_builder(self) -> IndexBuilder | None:
        """The store's offline index step (``ragline optimize``), when it has one."""
        return self.store if isinstance(self.store, IndexBuilder) else None

    async def migrate(self) -> None:
        """Bring the metadata database to the current schema (idempotent)."""
        await migrate(self.db)

    async def start(self) -> None:
        """Start what a server runs in the background. Unfinished files go back to the queue, runs a
        crash left ``running`` are closed as failed, pending callbacks and schedules resume."""
        # the event log's writer first, so that it stops last: it stores what ingest and runs report on their way out
        self.events.start()
        self._stack.push_async_callback(self.events.stop)
        await self.worker.recover()
        self.worker.start()
        self._stack.push_async_callback(self.worker.stop)
        await self.switches.recover()  # switches a stop interrupted fail; old indexes past their grace go
        self._stack.push_async_callback(self.switches.stop)
        await self.run_store.fail_unfinished(keep_kinds=("workflow",))  # workflow runs resume instead
        await self._stack.enter_async_context(self.run_manager)
        await self.workflows.resume_unfinished()
        self.callbacks.start()
        self._stack.push_async_callback(self.callbacks.stop)
        self.scheduler.start()
        self._stack.push_async_callback(self.scheduler.stop)
        for part in (self.automations, self.subscriptions, self.live):  # what the event log feeds
            part.start()
            self._stack.push_async_callback(part.stop)

    async def close(self) -> None:
        """Stop in reverse order (schedules, callbacks, runs, ingest), then release the store and database."""
        watchdog = asyncio.get_running_loop().call_later(SLOW_STOP_S, _log_stuck_tasks)
        try:
            await self._stack.aclose()
        finally:
            await self.worker.stop()
            await self.indexes.collections.close()
            await self.store.close()
            await self.db.dispose()
            watchdog.cancel()


SLOW_STOP_S = 30.0  # a stop that takes longer says what it still waits for (each part stops in well under a second)


def _log_stuck_tasks() -> None:
    """Name every task still pending, with where it waits: a stuck shutdown is otherwise a silent hang."""
    for task in asyncio.all_tasks():
        if not task.done():
            frames = "".join(f"\n  {f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}" for f in task.get_stack())
            log.warning("shutdown still waiting after %.0f s on task %s:%s", SLOW_STOP_S, task.get_name(), frames)


def build_services(
    settings: Settings, *, embedder: Embedder | None = None, models: ModelProvider | None = None,
    store: VectorStore | None = None,
) -> Services:
    """Wire everything from settings. ``embedder``, ``models`` and ``store`` replace the configured adapters."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = create_engine(
        settings.resolved_database_url, busy_timeout_s=settings.db_busy_timeout_s,
        pool_timeout_s=settings.db_pool_timeout_s, connect_timeout_s=settings.db_connect_timeout_s,
    )  # fmt: skip
    sessions = session_factory(db)
    embedder = embedder or create_embedder(settings)
    sparse = create_sparse_encoder()
    store = store or create_vector_store(settings, embedder.dim)
    blobs = BlobStore(settings.files_dir)
    # knowledge bases with an index of their own (#19): pointers in SQL, writes and searches routed by them
    indexes = SqlIndexDirectory(sessions, collections_for(store, settings), EmbedderCatalog(settings, embedder))
    routed = RoutedVectorStore(store, indexes)
    events = EventService(sessions)  # the workspace event log: ingest, runs and writes report into it
    worker = IngestWorker(
        sessions=sessions, blobs=blobs, store=routed, embedder=embedder, sparse=sparse,
        config=_ingest_config(settings), on_file_done=file_listener(events),
        dedicated=DedicatedIngest(indexes, blobs=blobs, sparse=sparse, config=_ingest_config(settings)),
    )  # fmt: skip
    knowledge = KnowledgeService(
        sessions=sessions, blobs=blobs, store=routed, max_upload_bytes=settings.max_upload_bytes, notify=worker.notify
    )
    retriever = RoutedRetriever(
        directory=indexes, embedder=embedder, sparse=sparse, store=store, max_top_k=settings.search_max_top_k,
        reranker=load_reranker(settings),
    )  # fmt: skip
    switches = IndexSwitcher(
        sessions=sessions, directory=indexes, blobs=blobs, sparse=sparse, config=_ingest_config(settings),
        default_store=store, default_embedder=settings.embedder, default_dim=embedder.dim, retriever=retriever,
        alias_prefix=settings.qdrant_collection.lower(),
    )  # fmt: skip
    evaluations = EvaluationService(
        sessions, retriever, describe=index_describe(switches, reranker=retriever.reranker is not None)
    )
    switches.evaluate = switch_evaluator(evaluations)
    models = models or create_model_provider(settings)
    run_store = SqlRunStore(sessions)
    run_manager = RunManager(run_store, max_running_per_workspace=settings.max_runs_per_workspace)
    networks = allowed_networks(settings.callback_allow_networks)
    callbacks = CallbackService(
        sessions=sessions, allowed=networks, max_attempts=settings.callback_max_attempts,
        retry_base_s=settings.callback_retry_base_s,
    )  # fmt: skip
    box = load_secret_box(settings.secret_key, settings.data_dir)
    environments = EnvironmentService(sessions)
    variables = VariableService(sessions, box, environments)
    model_configs = ModelConfigService(sessions, box, allowed=allowed_networks(settings.model_allow_networks))
    prompts = PromptService(sessions, environments, model_configs)
    mcp_servers = McpServerService(sessions, box, allowed=allowed_networks(settings.mcp_allow_networks))
    agents = AgentService(
        sessions=sessions, settings=settings, model_configs=model_configs, prompts=prompts, mcp_servers=mcp_servers
    )
    runs = RunService(
        manager=run_manager, models=models, agents=agents, knowledge=knowledge, retriever=retriever,
        callbacks=callbacks, environments=environments, variables=variables, model_configs=model_configs,
        prompts=prompts, default_model=settings.default_model, mcp_servers=mcp_servers, run_events=RunEvents(events),
    )  # fmt: skip
    schedules_changed = Wakeup()
    triggers = TriggerService(
        sessions=sessions, runs=runs, callback_networks=networks,
        webhook_rate_per_minute=settings.webhook_rate_per_minute, schedules_changed=schedules_changed,
    )  # fmt: skip
    workflows = WorkflowService(sessions=sessions, runs=runs, run_store=run_store, events=events)
    access = AccessService(
        sessions, mint_per_minute=settings.token_mint_per_minute, mint_per_day=settings.token_mint_per_day
    )
    return Services(
        settings=settings, db=db, sessions=sessions, embedder=embedder, sparse=sparse, store=store,
        retriever=retriever, knowledge=knowledge, worker=worker, access=access, principals=PrincipalCache(access),
        workspaces=WorkspaceService(sessions, knowledge),
        request_limiter=TokenBucket(settings.rate_limit_per_minute), models=models, run_store=run_store,
        run_manager=run_manager, agents=agents, callbacks=callbacks, runs=runs,
        chat=ChatService(sessions=sessions, runs=runs, agents=agents),
        executions=ExecutionService(run_store=run_store, runs=run_manager, sessions=sessions),
        triggers=triggers, scheduler=Scheduler(sessions=sessions, triggers=triggers, wakeup=schedules_changed),
        users=UserService(
            sessions, token_ttl_s=settings.login_token_ttl_s,
            attempts_per_user=settings.login_rate_per_user_per_minute,
            attempts_per_address=settings.login_rate_per_address_per_minute,
        ),
        environments=environments, variables=variables, model_configs=model_configs,
        audit_log=AuditLogService(sessions), run_stats=RunStatsService(sessions, cost_usd), prompts=prompts,
        mcp_servers=mcp_servers, events=events,
        automations=AutomationService(sessions, events, runs, max_depth=settings.automation_max_depth,
                                      workflows=workflows),
        subscriptions=SubscriptionService(
            sessions, events, allowed=networks, max_attempts=settings.callback_max_attempts,
            retry_base_s=settings.callback_retry_base_s,
        ),
        live=LiveFeed(events, access, queue_size=settings.live_queue_size, recheck_s=settings.live_recheck_s),
        evaluations=evaluations, indexes=indexes, switches=switches,
        previews=IngestPreviewer(
            sessions=sessions, embedder=embedder, sparse=sparse, config=_ingest_config(settings),
            max_upload_bytes=settings.max_upload_bytes, index_for=indexes.live_index,
        ),
        workflows=workflows,
    )  # fmt: skip


async def open_services(
    settings: Settings, *, embedder: Embedder | None = None, models: ModelProvider | None = None
) -> Services:
    """``build_services`` plus a migrated database: what the CLI, benchmarks and offline tools use."""
    services = build_services(settings, embedder=embedder, models=models)
    try:
        await services.migrate()
    except BaseException:
        await services.close()
        raise
    return services


def _ingest_config(settings: Settings) -> IngestConfig:
    return IngestConfig(
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
        max_chunks=settings.max_chunks_per_file,
        parse_timeout_s=settings.parse_timeout_s,
        parse_memory_mb=settings.parse_memory_mb,
        max_attempts=settings.ingest_max_attempts,
        workers=settings.ingest_workers,
    )

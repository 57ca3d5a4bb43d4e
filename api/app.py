"""``create_app()``: the single composition root of the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio.to_thread
from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from api.auth import TokenBucket, access_guard, provide_principal
from api.container import Services, build_services
from api.errors import EXCEPTION_HANDLERS
from api.routes.agents import AgentController
from api.routes.chat import AssistantController, ChatController
from api.routes.executions import ExecutionController
from api.routes.health import health
from api.routes.knowledge import UPLOAD_OVERHEAD, FileController, KnowledgeBaseController
from api.routes.search import SearchController
from api.routes.tokens import TokenController
from api.routes.triggers import TRIGGER_HANDLERS
from api.routes.workspaces import WorkspaceController, me
from api.services.scheduler import TriggerRuntime
from engine.ports import Embedder
from engine.settings import Settings

log = logging.getLogger("ragline")
JSON_BODY_LIMIT = 1024 * 1024


def _provide_services(request: Any) -> Services:
    services: Services = request.app.state.services
    return services


def create_app(
    settings: Settings | None = None,
    *,
    embedder: Embedder | None = None,
    extra_handlers: Sequence[Any] = (),
) -> Litestar:
    """Build the app; its lifespan opens the services. ``embedder`` lets tests share one loaded model."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        built = await build_services(settings, embedder=embedder)
        app.state.services = built
        app.state.rate_limiter = TokenBucket(settings.rate_limit_per_minute)
        issued = await built.access.bootstrap(secret=settings.bootstrap_token or None)
        if issued is not None and not settings.bootstrap_token:
            # printed once, on the first start only: the operator's way in
            print(f"ragline: bootstrap admin token (shown once): {issued.secret}", flush=True)
        await built.worker.recover()
        built.worker.start()
        await built.open_runs()
        triggers = TriggerRuntime(built)
        triggers.start()
        warm = asyncio.create_task(_warm_up(built))
        try:
            yield
        finally:
            warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warm
            await triggers.stop()  # pending fires and callbacks stay in the database for the next start
            await built.close()

    upload_router = Router(
        path="/", route_handlers=[FileController], request_max_body_size=settings.max_upload_bytes + UPLOAD_OVERHEAD
    )
    return Litestar(
        route_handlers=[health, KnowledgeBaseController, SearchController, upload_router, AgentController,
                        ExecutionController, ChatController, AssistantController,
                        TokenController, WorkspaceController, me, *TRIGGER_HANDLERS, *extra_handlers],
        dependencies={"services": Provide(_provide_services, sync_to_thread=False),
                      "principal": Provide(provide_principal, sync_to_thread=False)},
        guards=[access_guard],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        request_max_body_size=JSON_BODY_LIMIT,
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None,
        openapi_config=OpenAPIConfig(
            title="Ragline API", version="1.0.0", path="/schema",
            components=Components(security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", description="API token (rl_…)"),
                "apiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
            }),
            security=[{"bearer": []}, {"apiKey": []}],
        ),
        debug=False,
    )


async def _warm_up(services: Services) -> None:
    """Load the embedding model and litellm in the background so the first search or run does not pay."""
    warm = getattr(services.embedder, "warm_up", None)
    for step in (warm, services.agents.model_client):
        if step is None:
            continue
        try:
            await anyio.to_thread.run_sync(step)
        except Exception:
            log.exception("warm-up step failed")

"""``create_app()``: the HTTP API around one ``Services`` (built by ``api.container``, the composition root).

One init plugin (litestar-fullstack's ``ApplicationCore`` shape) contributes the routes, the
dependencies, the guard, the error handlers, the OpenAPI settings and the lifespan that starts and
stops the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio.to_thread
from litestar import Litestar, Router
from litestar.config.app import AppConfig
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins import InitPluginProtocol

from api.auth import PUBLIC, access_guard, provide_principal
from api.container import Services, build_services
from api.errors import EXCEPTION_HANDLERS
from api.mcp_endpoint import McpEndpoint
from api.request_context import RequestIdMiddleware, add_request_id_header, logging_config
from api.routes.agents import AgentController
from api.routes.automations import AutomationController
from api.routes.chat import AssistantController, ChatController
from api.routes.configuration import EnvironmentController, VariableController
from api.routes.console import CONSOLE_HANDLERS, SWAGGER_CSS, SWAGGER_FAVICON, SWAGGER_JS, SWAGGER_PRESET_JS
from api.routes.evaluations import EVALUATION_HANDLERS
from api.routes.events import EventController
from api.routes.executions import ExecutionController, run_log
from api.routes.governance import GOVERNANCE_HANDLERS
from api.routes.health import Readiness, health
from api.routes.indexes import INDEX_HANDLERS
from api.routes.knowledge import UPLOAD_OVERHEAD, FileController, KnowledgeBaseController
from api.routes.live import LIVE_HANDLERS
from api.routes.mcp_servers import McpServerController
from api.routes.models import ModelController, SystemModelController
from api.routes.openai_compat import openai_router
from api.routes.prompts import PROMPT_HANDLERS
from api.routes.search import SearchController
from api.routes.subscriptions import SubscriptionController
from api.routes.tokens import TokenController
from api.routes.triggers import TRIGGER_HANDLERS
from api.routes.users import AuthController, UserController
from api.routes.workflows import WORKFLOW_HANDLERS
from api.routes.workspaces import WorkspaceController, me
from api.services.events_hooks import emit_after_write
from engine.retrieval import SearchRequest
from engine.settings import Settings
from engine.tokens import count_tokens
from engine.types import SearchFilters

log = logging.getLogger("ragline")
JSON_BODY_LIMIT = 1024 * 1024


class RaglineCore(InitPluginProtocol):
    """Wires one ``Services`` into the app: routes, dependencies, guard, errors, OpenAPI and lifespan."""

    def __init__(self, services: Services, *, extra_handlers: Sequence[Any] = ()) -> None:
        self.services = services
        self.extra_handlers = tuple(extra_handlers)
        self.readiness = Readiness()
        self.mcp = McpEndpoint(services)  # Ragline as an MCP server, at /mcp

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        settings = self.services.settings
        upload_router = Router(
            path="/", route_handlers=[FileController],
            request_max_body_size=settings.max_upload_bytes + UPLOAD_OVERHEAD,
        )  # fmt: skip
        app_config.route_handlers.extend([
            health, KnowledgeBaseController, SearchController, upload_router, AgentController, ExecutionController,
            run_log, ChatController, AssistantController, TokenController, WorkspaceController, me, *TRIGGER_HANDLERS,
            AuthController, UserController, EnvironmentController, VariableController, ModelController,
            *PROMPT_HANDLERS, *EVALUATION_HANDLERS, *INDEX_HANDLERS, *WORKFLOW_HANDLERS,
            EventController, AutomationController, SubscriptionController, *LIVE_HANDLERS,
            SystemModelController, *GOVERNANCE_HANDLERS, *CONSOLE_HANDLERS, openai_router(), McpServerController,
            self.mcp.handler(), *self.extra_handlers,
        ])  # fmt: skip
        services = self.services
        app_config.dependencies.update({
            "services": Provide(lambda: services, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        })  # fmt: skip
        # the guard runs before dependency injection; /health reads the warm-up's progress
        app_config.state.update({"services": services, "readiness": self.readiness})
        app_config.guards.append(access_guard)
        app_config.exception_handlers.update(EXCEPTION_HANDLERS)
        # request ids: current while any route runs (logs, envelopes), a header on every response (router 404s too)
        app_config.middleware.append(RequestIdMiddleware())
        app_config.before_send.append(add_request_id_header)
        app_config.before_send.append(emit_after_write)  # a published prompt, a revoked token … into the event log
        app_config.before_send.append(complete_allow_header)
        app_config.logging_config = logging_config(settings.log_level)
        app_config.lifespan.append(self._lifespan)
        app_config.lifespan.append(self.mcp.lifespan)  # the task group the MCP session manager runs in, with the app
        app_config.request_max_body_size = JSON_BODY_LIMIT
        if settings.cors_origins:
            app_config.cors_config = CORSConfig(allow_origins=list(settings.cors_origins))
        app_config.openapi_config = _openapi()
        app_config.debug = False
        return app_config

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Litestar) -> AsyncIterator[None]:
        services, settings = self.services, self.services.settings
        try:
            await services.migrate()
            issued = await services.access.bootstrap(secret=settings.bootstrap_token or None)
            if issued is not None and not settings.bootstrap_token:
                # printed once, on the first start only: the operator's way in
                print(f"ragline: bootstrap admin token (shown once): {issued.secret}", flush=True)
            await services.start()
        except BaseException:
            await services.close()
            raise
        # serving starts now (/health: "warming"); what arrives before the warm-up is done waits for it
        self.readiness.reset()
        warm = asyncio.create_task(_warm_up(services, self.readiness))
        try:
            yield
        finally:
            warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warm
            await services.close()  # pending fires and callbacks stay in the database for the next start


async def complete_allow_header(message: Any, scope: Any) -> None:
    """``before_send``: an OPTIONS answer's ``Allow`` names every method of its path. Litestar's automatic OPTIONS
    handler keeps the methods of the first handler group that registered the path (``/agents``: "OPTIONS, POST",
    although GET lists agents); its 405 answers are right, and so is the route table this reads."""
    if message["type"] != "http.response.start" or scope.get("type") != "http" or scope.get("method") != "OPTIONS":
        return
    handler = scope.get("route_handler")
    methods: set[str] = set()
    for path in getattr(handler, "paths", ()):
        methods |= set(scope["app"].route_handler_method_map.get(path, {}))
    if methods:
        headers = [(name, value) for name, value in message.get("headers") or [] if name.lower() != b"allow"]
        message["headers"] = [*headers, (b"allow", ", ".join(sorted(methods)).encode())]


def create_app(
    settings: Settings | None = None, *, services: Services | None = None, extra_handlers: Sequence[Any] = ()
) -> Litestar:
    """The app. ``services`` hands in services a test built itself (``build_services(settings, embedder=…)``)."""
    if services is None:
        services = build_services(settings or Settings.from_env())
    return Litestar(plugins=[RaglineCore(services, extra_handlers=extra_handlers)])


def _openapi() -> OpenAPIConfig:
    from api.openapi import RaglineOpenAPIConfig  # the served document: Litestar's, corrected (api/openapi.py)

    # the document is public, so client generators can fetch it; every route it describes still needs a token
    schema_router = Router("/schema", route_handlers=[], opt=PUBLIC, include_in_schema=False)
    return RaglineOpenAPIConfig(
        title="Ragline API", version="1.0.0", path="/schema", openapi_router=schema_router,
        components=Components(security_schemes={
            "bearer": SecurityScheme(type="http", scheme="bearer", description="API token (rl_…)"),
            "apiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
            "apiToken": SecurityScheme(
                type="apiKey", name="X-API-Token", security_scheme_in="header", description="the same token"
            ),
        }),
        security=[{"bearer": []}, {"apiKey": []}, {"apiToken": []}],
        # Swagger UI from local files (the swagger-ui-bundle-v2 package), at /schema and /schema/swagger: no CDN,
        # works offline; its Authorize button takes a token. Litestar's other renderers load CDNs: not served.
        render_plugins=[
            SwaggerRenderPlugin(path="/swagger", js_url=SWAGGER_JS, css_url=SWAGGER_CSS,
                                standalone_preset_js_url=SWAGGER_PRESET_JS, favicon=SWAGGER_FAVICON),
            JsonRenderPlugin(), YamlRenderPlugin(),
        ],
    )  # fmt: skip


# a first query through the sparse encoder and the vector store, in a workspace no one has
_WARM_UP_SEARCH = SearchRequest(query="warm up", filters=SearchFilters(workspace_id="-warm-up-"), top_k=1)


async def _warm_up(services: Services, readiness: Readiness) -> None:
    """Load what the first search and the first chat need, so that neither pays for it: the embedding model
    (exported to int8 ONNX on a machine's first start, ~20 s, then loaded), a first query through the store, and
    the default model's client (litellm is imported only when it is a provider's) and tokenizer. The embedder and
    the model warm up side by side; ``/health`` says ``ready`` once all of it is done."""
    settings = services.settings
    log.info("warming up: embedding model, first search, default model %s", settings.default_model)

    async def embedder_then_search() -> None:
        if await readiness.run("embedder", lambda: anyio.to_thread.run_sync(services.embedder.warm_up)):
            await readiness.run("search", lambda: services.retriever.retrieve(_WARM_UP_SEARCH))
        else:
            readiness.fail("search", "the embedding model did not load")

    def load_model() -> None:
        services.models.warm_up()
        count_tokens("warm up", settings.default_model)  # the run path counts tokens with the model's encoding
        count_tokens("warm up")  # and the built-in model with cl100k

    await asyncio.gather(
        embedder_then_search(), readiness.run("model", lambda: anyio.to_thread.run_sync(load_model))
    )
    if readiness.ready:
        log.info("ready in %.1f s", readiness.ready_after_s or 0.0)
    else:
        failed = {name: part.error for name, part in readiness.parts.items() if part.state == "failed"}
        log.warning("warm-up done with failures (retried on first use): %s", failed)

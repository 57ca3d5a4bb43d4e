"""The ``/mcp`` mount (Ragline as an MCP server, ``api.mcp_server``), started on its first request.

The MCP SDK costs ~0.9 s to import, a third of the server's start, and most deployments never call ``/mcp``; so the
app starts without it. The first request imports ``api.mcp_server`` in a worker thread (the event loop keeps
serving meanwhile), builds the server and runs its session manager in a task group that lives as long as the app;
requests that arrive meanwhile wait for the same start. Each start of the app gets a new session manager.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus
from litestar import Litestar
from litestar.handlers import asgi
from litestar.handlers.asgi_handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send

from api.auth import VIEWER
from api.container import Services

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

MCP_PATH = "/mcp"


class McpEndpoint:
    """The ``/mcp`` mount and the lifespan of its session manager (started on first use, stopped with the app)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._manager: StreamableHTTPSessionManager | None = None
        self._tasks: TaskGroup | None = None
        self._starting = anyio.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            self._tasks, self._starting = tasks, anyio.Lock()  # this start's own: the app may start again later
            try:
                yield
            finally:
                self._tasks, self._manager = None, None
                tasks.cancel_scope.cancel()  # the session manager, if it was started

    async def _run_manager(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        server_module: Any = await anyio.to_thread.run_sync(importlib.import_module, "api.mcp_server")
        manager = server_module.session_manager(self.services)
        async with manager.run():
            self._manager = manager
            task_status.started()
            await anyio.sleep_forever()

    async def manager(self) -> StreamableHTTPSessionManager:
        if self._manager is None:
            async with self._starting:
                if self._manager is None:
                    if self._tasks is None:  # pragma: no cover - requests arrive only while the app runs
                        raise RuntimeError("the MCP endpoint is not running")
                    await self._tasks.start(self._run_manager)
        assert self._manager is not None
        return self._manager

    def handler(self) -> ASGIRouteHandler:
        endpoint = self

        @asgi(path=MCP_PATH, is_mount=True, opt=VIEWER, copy_scope=True)
        async def mcp(scope: Scope, receive: Receive, send: Send) -> None:
            manager = await endpoint.manager()
            await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]

        return mcp

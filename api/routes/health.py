from __future__ import annotations

from typing import Any

from litestar import Request, get

from api.auth import PUBLIC


@get("/health", opt=PUBLIC, summary="Liveness and readiness", tags=["health"])
async def health(request: Request[Any, Any, Any]) -> dict[str, Any]:
    services = request.app.state.services  # public: no principal, so no dependency graph to go through
    return {"status": "ok", "embedder": services.embedder.name, "vector_store": type(services.store).__name__}

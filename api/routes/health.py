"""``GET /health``: liveness (always 200 while the process serves) and readiness (what is warmed up).

The lifespan (``api.app``) warms up, in the background, what the first search and the first chat need: the
embedding model (exported to int8 ONNX once per machine, then loaded), a first query through the sparse encoder
and the vector store, and the default model's client and tokenizer. ``Readiness`` records each part's state;
``/health`` says ``warming`` until every part is done, then ``ready`` (or ``degraded`` when a part failed: the
server still answers, and that part is retried on first use). A request that arrives while warming waits for the
same warm-up (the embedder loads under one lock), it never starts a second one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from litestar import Request, get

from api.auth import PUBLIC
from engine.errors import EngineError

PartState = Literal["pending", "warming", "ready", "failed"]
Status = Literal["warming", "ready", "degraded"]
PARTS = ("embedder", "search", "model")
log = logging.getLogger("ragline")


@dataclass
class Part:
    state: PartState = "pending"
    seconds: float | None = None
    error: str | None = None

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state}
        if self.seconds is not None:
            out["seconds"] = round(self.seconds, 2)
        if self.error is not None:
            out["error"] = self.error
        return out


class Readiness:
    """The warm-up's progress, part by part (``embedder``, ``search``, ``model``); one per app."""

    def __init__(self, parts: Iterable[str] = PARTS) -> None:
        self._names = tuple(parts)
        self.reset()

    def reset(self) -> None:
        """Every part pending again (a new lifespan: the app starts over)."""
        self.parts = {name: Part() for name in self._names}
        self.started = time.monotonic()
        self.ready_after_s: float | None = None

    @property
    def status(self) -> Status:
        states = {part.state for part in self.parts.values()}
        if states & {"pending", "warming"}:
            return "warming"
        return "degraded" if "failed" in states else "ready"

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    async def run(self, name: str, step: Callable[[], Awaitable[object]]) -> bool:
        """Run one part's warm-up and record how it went; returns whether it succeeded (never raises)."""
        part = self.parts[name]
        part.state, started = "warming", time.monotonic()
        try:
            await step()
        except Exception as exc:  # recorded and shown on /health; the part is retried on first use
            log.warning("warm-up of the %s failed", name, exc_info=True)
            part.state, part.error = "failed", f"{type(exc).__name__}: {exc}"[:300]
        else:
            part.state = "ready"
        part.seconds = time.monotonic() - started
        self._settled()
        return part.state == "ready"

    def fail(self, name: str, reason: str) -> None:
        """Mark a part failed without running it (e.g. search, when the embedder could not load)."""
        self.parts[name].state, self.parts[name].error = "failed", reason
        self._settled()

    def _settled(self) -> None:
        if self.status != "warming" and self.ready_after_s is None:
            self.ready_after_s = time.monotonic() - self.started

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "ready": self.ready,
            "parts": {name: part.view() for name, part in self.parts.items()},
        }
        if self.ready_after_s is not None:
            out["warm_up_s"] = round(self.ready_after_s, 2)
        return out


@get("/health", opt=PUBLIC, summary="Liveness and readiness", tags=["health"])
async def health(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """200 whenever the process serves (liveness); ``ready`` says whether the warm-up is done (readiness)."""
    state = request.app.state  # public: no principal, so no dependency graph to go through
    services = state.services
    readiness: Readiness | None = state.get("readiness")
    view: dict[str, Any] = (
        readiness.view() if readiness is not None else {"status": "ready", "ready": True, "parts": {}}
    )
    parts = view["parts"]
    if "embedder" in parts:
        parts["embedder"]["name"] = services.embedder.name
    if "model" in parts:
        parts["model"]["name"] = services.settings.default_model
    store = await _store_state(services.store)
    parts["vector_store"] = {"state": "ready" if store is None else "failed", "name": type(services.store).__name__,
                             **({"error": store} if store else {})}
    if store is not None:  # search answers 503 and uploads wait until the store is back
        view["status"], view["ready"] = "degraded", False
    return {**view, "embedder": services.embedder.name, "vector_store": type(services.store).__name__}


_PING_CACHE_S = 2.0
_last_ping: dict[int, tuple[float, str | None]] = {}


async def _store_state(store: Any) -> str | None:
    """``None`` when the vector store answers, else why not (asked at most every 2 s, 0.5 s at most)."""
    cached = _last_ping.get(id(store))
    if cached is not None and time.monotonic() - cached[0] < _PING_CACHE_S:
        return cached[1]
    try:
        with anyio.fail_after(0.5):
            await store.ping()
        problem = None
    except TimeoutError:
        problem = "the vector store did not answer within 0.5 s"
    except EngineError as exc:
        problem = exc.message[:300]
    _last_ping[id(store)] = (time.monotonic(), problem)
    return problem

"""Parameters shared by routes: list paging, version numbers in paths."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter
from litestar.response import ServerSentEvent

from api.container import Services
from api.services.identity import Principal
from api.sse import event_stream_response
from engine.types import MAX_VERSION

PageNo = Annotated[int, Parameter(ge=1, le=1_000_000, query="page")]
Limit = Annotated[int, Parameter(ge=1, le=100, query="limit")]
VersionInPath = Annotated[int, Parameter(ge=1, le=MAX_VERSION)]  # see engine.types.VersionNumber


def stream_run(services: Services, principal: Principal, run_id: str, after_seq: int = 0) -> ServerSentEvent:
    """The run's events as SSE (replay after ``after_seq``, then live), with keepalive pings."""
    events = services.run_manager.subscribe(run_id, after_seq, workspace_id=principal.workspace_id)
    return event_stream_response(events, services.settings.sse_ping_interval_s)

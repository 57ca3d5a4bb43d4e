"""Executions (runs): list, get, events, live stream with Last-Event-ID resume, cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.response import ServerSentEvent

from api.auth import VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.common import Limit, PageNo, stream_run
from api.services.executions import ExecutionInfo
from api.services.identity import Principal
from api.sse import event_payload, parse_last_event_id

After = Annotated[int | None, Parameter(query="after", ge=0, le=10_000_000, required=False)]
Offset = Annotated[int | None, Parameter(query="offset", ge=0, le=10_000_000, required=False)]


class ExecutionController(Controller):
    path = "/api/v1/executions"
    tags = ["executions"]

    @get("/", opt=VIEWER, summary="List runs, newest first")
    async def list_executions(
        self,
        services: Services,
        principal: Principal,
        page: PageNo = 1,
        limit: Limit = 20,
        agent_id: Annotated[str | None, Parameter(query="agent_id", max_length=64)] = None,
        session_id: Annotated[str | None, Parameter(query="session_id", max_length=64)] = None,
        status: Annotated[
            Literal["running", "succeeded", "failed", "cancelled"] | None, Parameter(query="status")
        ] = None,
        kind: Annotated[
            Literal["chat", "agent", "trigger", "prompt", "workflow"] | None, Parameter(query="kind")
        ] = None,
        offset: Offset = None,
    ) -> ListEnvelope[ExecutionInfo]:
        result = await services.executions.list_runs(
            principal, page=page, limit=limit, agent_id=agent_id, status=status, kind=kind, session_id=session_id,
            offset=offset,
        )  # fmt: skip
        return page_of(result.items, page=offset // limit + 1 if offset is not None else page, limit=limit,
                       total=result.total)

    @get("/{run_id:str}", opt=VIEWER, summary="Get a run with its steps, usage and timing")
    async def get_execution(self, run_id: str, services: Services, principal: Principal) -> Envelope[ExecutionInfo]:
        return ok(await services.executions.get(principal, run_id))

    @get("/{run_id:str}/events", opt=VIEWER, summary="The run's events as stored (JSON)")
    async def execution_events(
        self, run_id: str, services: Services, principal: Principal, after: After = None
    ) -> Envelope[list[dict[str, Any]]]:
        events = await services.executions.events(principal, run_id, after or 0)
        return ok([event_payload(event) for event in events])

    @get("/{run_id:str}/stream", opt=VIEWER, summary="Stream the run's events (SSE); resume with Last-Event-ID")
    async def stream_execution(
        self,
        run_id: str,
        request: Request[Any, Any, Any],
        services: Services,
        principal: Principal,
        after: After = None,
    ) -> ServerSentEvent:
        await services.executions.get(principal, run_id)  # 404 before the stream starts
        after_seq = after if after is not None else parse_last_event_id(request.headers.get("last-event-id"))
        return stream_run(services, principal, run_id, after_seq)

    @post("/{run_id:str}/cancel", opt=VIEWER, status_code=202, summary="Cancel a running run")
    async def cancel_execution(self, run_id: str, services: Services, principal: Principal) -> Envelope[dict[str, Any]]:
        cancelled = await services.executions.cancel(principal, run_id)
        return ok(
            {"run_id": run_id, "cancelled": cancelled},
            "Cancellation requested" if cancelled else "Run had already finished",
        )


@get("/api/v1/runs", opt=VIEWER, tags=["executions"], summary="The run log, newest first (?limit= ?offset=)")
async def run_log(
    services: Services, principal: Principal, limit: Limit = 20, offset: Offset = None, page: PageNo = 1
) -> ListEnvelope[ExecutionInfo]:
    result = await services.executions.list_runs(principal, page=page, limit=limit, offset=offset)
    return page_of(result.items, page=offset // limit + 1 if offset is not None else page, limit=limit,
                   total=result.total)

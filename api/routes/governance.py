"""Governance: the roles that can be assigned, the audit log of every write, and run statistics."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import get
from litestar.params import Parameter

from api.auth import ADMIN, VIEWER
from api.container import Services
from api.envelope import Envelope, ListEnvelope, ok, page_of
from api.routes.common import Limit, PageNo
from api.services.audit_log import AuditEntryInfo, AuditFilter
from api.services.identity import Principal
from api.services.run_stats import RunStats
from engine.ids import unix

Text = Annotated[str | None, Parameter(max_length=128)]
Moment = Annotated[datetime | None, Parameter(description="ISO-8601 (or Unix seconds as a string)")]


class RoleInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    can: list[str]


ROLES = [
    RoleInfo(name="viewer", description="Reads, searches, chats and runs agents; cancels the runs they started.",
             can=["read", "search", "chat", "run", "manage own tokens", "change own password"]),
    RoleInfo(name="editor", description="A viewer who also writes knowledge, agents, triggers and variables.",
             can=["viewer's", "create/update/delete knowledge bases and files", "agents", "triggers", "variables",
                  "cancel any run"]),
    RoleInfo(name="admin", description="An editor who also manages members, users, tokens, environments and models.",
             can=["editor's", "members and users", "every member's tokens", "environments", "model configurations",
                  "audit log", "every member's chat sessions"]),
]  # fmt: skip


@get("/api/v1/roles", opt=VIEWER, tags=["governance"], summary="The roles that can be assigned, and what each may do")
async def list_roles() -> Envelope[list[RoleInfo]]:
    return ok(ROLES)


@get("/api/v1/audit", opt=ADMIN, tags=["governance"], summary="The audit log of every write, newest first")
async def audit_log(
    services: Services, principal: Principal, page: PageNo = 1, limit: Limit = 20,
    offset: Annotated[int | None, Parameter(query="offset", ge=0, le=10_000_000)] = None,
    actor: Annotated[str | None, Parameter(query="actor", max_length=64)] = None,
    resource_type: Annotated[str | None, Parameter(query="resource_type", max_length=64)] = None,
    resource_id: Annotated[str | None, Parameter(query="resource_id", max_length=64)] = None,
    action: Annotated[str | None, Parameter(query="action", max_length=64)] = None,
    since: Annotated[datetime | None, Parameter(query="since")] = None,
    until: Annotated[datetime | None, Parameter(query="until")] = None,
) -> ListEnvelope[AuditEntryInfo]:
    where = AuditFilter(actor=actor, resource_type=resource_type, resource_id=resource_id, action=action,
                        since=unix(since), until=unix(until))
    result = await services.audit_log.list(principal, where, page=page, limit=limit, offset=offset)
    return page_of(result.items, page=offset // limit + 1 if offset is not None else page, limit=limit,
                   total=result.total)


@get("/api/v1/executions/stats", opt=VIEWER, tags=["executions"],
     summary="Runs by status, agent, model and day: count, success rate, latency, tokens, cost")
async def run_stats(
    services: Services, principal: Principal,
    since: Annotated[datetime | None, Parameter(query="since")] = None,
    until: Annotated[datetime | None, Parameter(query="until")] = None,
) -> Envelope[RunStats]:
    return ok(await services.run_stats.stats(principal, since=unix(since), until=unix(until)))


@get("/api/v1/runs/stats", opt=VIEWER, tags=["executions"],
     summary="Run statistics under seed 001's path (as /executions/stats)")
async def runs_stats(
    services: Services, principal: Principal,
    since: Annotated[datetime | None, Parameter(query="since")] = None,
    until: Annotated[datetime | None, Parameter(query="until")] = None,
) -> Envelope[RunStats]:
    return ok(await services.run_stats.stats(principal, since=unix(since), until=unix(until)))


GOVERNANCE_HANDLERS = [list_roles, audit_log, run_stats, runs_stats]

"""Run statistics: runs aggregated by status, agent, model, day and prompt version (count, success rate, latency,
tokens, cost).

Runs of the window are read once and grouped here: percentiles have no portable SQL form across SQLite and
PostgreSQL, and a window of runs is small next to what the database holds. Cost comes from litellm's bundled
price map (through the model adapter) when it knows the model; otherwise it is ``None``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import anyio.to_thread
import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.identity import Principal
from engine.db.models import Run

CostOf = Callable[[str, int, int], float | None]  # (model, prompt tokens, completion tokens) -> USD
DEFAULT_WINDOW_S = 30 * 86400.0
MAX_RUNS = 200_000


class RunGroup(msgspec.Struct, frozen=True, kw_only=True):
    key: str | None  # the status, agent id, model or day (YYYY-MM-DD, UTC); None: the whole window
    runs: int
    succeeded: int
    failed: int
    cancelled: int
    success_rate: float | None  # succeeded / finished
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None when the price of some model in the group is unknown


class PromptVersionGroup(RunGroup, frozen=True, kw_only=True):
    """The runs that used one version of a prompt (``key``: ``<prompt id>:<version>``; version ``None``: the
    playground's draft)."""

    prompt_id: str
    prompt_version: int | None


class RunStats(msgspec.Struct, frozen=True, kw_only=True):
    since: datetime
    until: datetime
    total: RunGroup
    by_status: list[RunGroup]
    by_agent: list[RunGroup]
    by_model: list[RunGroup]
    by_day: list[RunGroup]
    by_prompt_version: list[PromptVersionGroup] = []  # runs that used a prompt (agents bound to one, prompt runs)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _group(key: str | None, rows: list[Run], cost_of: CostOf) -> RunGroup:
    statuses = [r.status for r in rows]
    finished = sum(1 for s in statuses if s != "running")
    latencies = [r.latency_ms for r in rows if r.latency_ms is not None]
    costs = [cost_of(r.model, r.prompt_tokens, r.completion_tokens) for r in rows if r.total_tokens]
    return RunGroup(
        key=key, runs=len(rows), succeeded=statuses.count("succeeded"), failed=statuses.count("failed"),
        cancelled=statuses.count("cancelled"),
        success_rate=round(statuses.count("succeeded") / finished, 4) if finished else None,
        p50_latency_ms=round(statistics.median(latencies), 1) if latencies else None,
        p95_latency_ms=_percentile(latencies, 0.95),
        prompt_tokens=sum(r.prompt_tokens for r in rows), completion_tokens=sum(r.completion_tokens for r in rows),
        cost_usd=None if any(c is None for c in costs) else round(sum(c or 0.0 for c in costs), 6),
    )  # fmt: skip


def _by_prompt_version(rows: Iterable[Run], cost_of: CostOf) -> list[PromptVersionGroup]:
    groups: dict[tuple[str, int | None], list[Run]] = {}
    for row in rows:
        if row.prompt_id is not None:
            groups.setdefault((row.prompt_id, row.prompt_version), []).append(row)
    out = []
    for (prompt_id, version), group in groups.items():
        totals = msgspec.structs.asdict(_group(f"{prompt_id}:{version if version is not None else 'draft'}", group,
                                               cost_of))  # fmt: skip
        out.append(PromptVersionGroup(**totals, prompt_id=prompt_id, prompt_version=version))
    return sorted(out, key=lambda g: (g.prompt_id, -(g.prompt_version or 0)))


def _by(rows: Iterable[Run], key: Callable[[Run], str | None], cost_of: CostOf) -> list[RunGroup]:
    groups: dict[str | None, list[Run]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return sorted((_group(k, g, cost_of) for k, g in groups.items()), key=lambda g: (-g.runs, g.key or ""))


class RunStatsService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], cost_of: CostOf) -> None:
        self.sessions = sessions
        self.cost_of = cost_of

    async def stats(self, principal: Principal, *, since: float | None, until: float | None) -> RunStats:
        until = until if until is not None else time.time()
        since = since if since is not None else until - DEFAULT_WINDOW_S
        query = (
            select(Run)
            .where(Run.workspace_id == principal.workspace_id, Run.started_at >= since, Run.started_at < until)
            .order_by(Run.started_at.desc())
            .limit(MAX_RUNS)
        )
        async with self.sessions() as session:
            rows = list(await session.scalars(query))
        # grouping is CPU work and prices need litellm's import: off the event loop
        return await anyio.to_thread.run_sync(self._aggregate, rows, since, until)

    def _aggregate(self, rows: list[Run], since: float, until: float) -> RunStats:
        day = lambda r: datetime.fromtimestamp(r.started_at, UTC).date().isoformat()  # noqa: E731
        return RunStats(
            since=datetime.fromtimestamp(since, UTC), until=datetime.fromtimestamp(until, UTC),
            total=_group(None, rows, self.cost_of), by_status=_by(rows, lambda r: r.status, self.cost_of),
            by_agent=_by(rows, lambda r: r.agent_id, self.cost_of), by_model=_by(rows, lambda r: r.model, self.cost_of),
            by_day=sorted(_by(rows, day, self.cost_of), key=lambda g: g.key or ""),
            by_prompt_version=_by_prompt_version(rows, self.cost_of),
        )  # fmt: skip

"""Golden sets and evaluations per knowledge base: how good search is on a team's own documents, over time.

A golden set is a knowledge base's list of judged queries (``engine.evaluation.golden``). An evaluation runs
one (stored or inline) through the knowledge base's search in every mode and keeps the metrics, the worst
queries and the settings it ran with (embedder, chunking, collection), so the history shows what a change
did. Each evaluation is compared with the previous successful one of the same golden set (``delta``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.db.models import Evaluation, GoldenSet, KnowledgeBase, new_id, now
from engine.db.paging import fetch_page
from engine.db.scoped import get_in_workspace
from engine.errors import Conflict, EngineError, InvalidInput, NotFound
from engine.evaluation import EvaluationReport, GoldenQuery, evaluate, modes_for, parse_golden, parse_golden_items
from engine.evaluation.golden import golden_to_builtins
from engine.ids import utc, utc_or_none
from engine.retrieval import Retriever
from engine.types import SearchFilters
from ingest.views import Page

DEFAULT_RECALL_K = 10
METRICS = ("ndcg_at_10", "recall_at_k", "mrr_at_10")
# what an evaluation records about the index it searched: embedder, chunking, collection (set by the container)
Describe = Callable[[str, str], Awaitable[dict[str, Any]]]


class GoldenSetInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kb_id: str
    name: str
    description: str
    query_count: int
    queries: list[dict[str, Any]] | None  # omitted (null) in lists
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: GoldenSet, *, with_queries: bool = True) -> GoldenSetInfo:
        return cls(
            id=row.id, kb_id=row.kb_id, name=row.name, description=row.description, query_count=len(row.queries),
            queries=list(row.queries) if with_queries else None, created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
        )  # fmt: skip


class EvaluationInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kb_id: str
    golden_set_id: str | None
    golden_set_name: str
    label: str
    status: str  # running | succeeded | failed
    switch_id: str | None  # set when an index switch ran it (on the live or the shadow collection)
    config: dict[str, Any]  # embedder, chunking, collection, modes, recall_k
    queries: int
    recall_k: int | None
    modes: list[dict[str, Any]]  # per mode: ndcg_at_10, recall_at_k, mrr_at_10, latency, worst queries
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    previous_id: str | None = None  # the previous successful evaluation of the same golden set
    delta: dict[str, dict[str, float]] | None = None  # per mode and metric: this minus the previous one

    @classmethod
    def of(cls, row: Evaluation, previous: Evaluation | None = None) -> EvaluationInfo:
        results = row.results or {}
        return cls(
            id=row.id, kb_id=row.kb_id, golden_set_id=row.golden_set_id, golden_set_name=row.golden_set_name,
            label=row.label, status=row.status, switch_id=row.switch_id, config=dict(row.config or {}),
            queries=row.queries, recall_k=results.get("recall_k"), modes=list(results.get("modes", [])),
            error=row.error, created_at=utc(row.created_at), finished_at=utc_or_none(row.finished_at),
            previous_id=previous.id if previous is not None else None,
            delta=_delta(row, previous) if previous is not None else None,
        )  # fmt: skip


class EvaluationService:
    """Golden-set CRUD and evaluation runs; one evaluation runs at a time per process (they are CPU-bound)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], retriever: Retriever, *, describe: Describe | None = None
    ) -> None:
        self.sessions = sessions
        self.retriever = retriever
        self.describe = describe
        self._running = asyncio.Lock()

    # -- golden sets -----------------------------------------------------------------------------

    async def create_golden_set(
        self, workspace_id: str, kb_id: str, *, name: str, queries: Sequence[GoldenQuery], description: str = "",
        actor: str | None = None,
    ) -> GoldenSetInfo:  # fmt: skip
        name = _name(name)
        row = GoldenSet(
            id=new_id("gs"), workspace_id=workspace_id, kb_id=kb_id, name=name, description=description,
            queries=golden_to_builtins(queries), created_by=actor,
        )  # fmt: skip
        async with self.sessions() as session:
            await _kb(session, workspace_id, kb_id)
            session.add(row)
            try:
                await session.commit()
            except IntegrityError as exc:
                raise Conflict(f"a golden set named {name!r} already exists in this knowledge base") from exc
            return GoldenSetInfo.of(row)

    async def upload_golden_set(
        self, workspace_id: str, kb_id: str, *, name: str, data: bytes, description: str = "", actor: str | None = None
    ) -> GoldenSetInfo:
        """A golden set from a JSON or JSONL file's bytes."""
        return await self.create_golden_set(
            workspace_id, kb_id, name=name, queries=parse_golden(data), description=description, actor=actor
        )

    async def list_golden_sets(
        self, workspace_id: str, kb_id: str, *, page: int = 1, limit: int = 20
    ) -> Page[GoldenSetInfo]:
        where = [GoldenSet.workspace_id == workspace_id, GoldenSet.kb_id == kb_id]
        async with self.sessions() as session:
            await _kb(session, workspace_id, kb_id)
            order = [GoldenSet.created_at, GoldenSet.id]
            total, rows = await fetch_page(session, GoldenSet, where, order, page=page, limit=limit)
            items = [GoldenSetInfo.of(r, with_queries=False) for r in rows]
            return Page(items=items, page=page, limit=limit, total=total)

    async def get_golden_set(self, workspace_id: str, kb_id: str, golden_set_id: str) -> GoldenSetInfo:
        async with self.sessions() as session:
            return GoldenSetInfo.of(await _golden_set(session, workspace_id, kb_id, golden_set_id))

    async def update_golden_set(
        self, workspace_id: str, kb_id: str, golden_set_id: str, *, name: str | None = None,
        description: str | None = None, queries: Sequence[GoldenQuery] | None = None,
    ) -> GoldenSetInfo:  # fmt: skip
        async with self.sessions() as session:
            row = await _golden_set(session, workspace_id, kb_id, golden_set_id)
            if name is not None:
                row.name = _name(name)
            if description is not None:
                row.description = description
            if queries is not None:
                row.queries = golden_to_builtins(queries)
            row.updated_at = now()
            try:
                await session.commit()
            except IntegrityError as exc:
                raise Conflict(f"a golden set named {name!r} already exists in this knowledge base") from exc
            return GoldenSetInfo.of(row)

    async def delete_golden_set(self, workspace_id: str, kb_id: str, golden_set_id: str) -> None:
        """Delete a golden set; its evaluations stay in the history (with its name)."""
        async with self.sessions() as session:
            await session.delete(await _golden_set(session, workspace_id, kb_id, golden_set_id))
            await session.commit()

    # -- evaluations -----------------------------------------------------------------------------

    async def run(
        self, workspace_id: str, kb_id: str, *, golden_set_id: str | None = None,
        queries: Sequence[GoldenQuery] | None = None, golden_set_name: str = "", modes: Sequence[str] | None = None,
        recall_k: int = DEFAULT_RECALL_K, label: str = "", actor: str | None = None, retriever: Retriever | None = None,
        switch_id: str | None = None, config: dict[str, Any] | None = None,
    ) -> EvaluationInfo:  # fmt: skip
        """Evaluate the knowledge base with a stored golden set or inline ``queries`` and record the result.

        ``retriever`` searches something else than the knowledge base's live index (an index switch's shadow
        collection), ``config`` then says what. A failure is recorded (``failed``) and raised.
        """
        if (golden_set_id is None) == (queries is None):
            raise InvalidInput("give a golden_set_id or inline queries (one of them)")
        retriever = retriever or self.retriever
        specs = modes_for(modes, reranker=retriever.reranker is not None)
        if not 1 <= recall_k <= retriever.max_top_k:
            raise InvalidInput(f"recall_k must be from 1 to {retriever.max_top_k}")
        async with self.sessions() as session:
            await _kb(session, workspace_id, kb_id)
            if golden_set_id is not None:
                stored = await _golden_set(session, workspace_id, kb_id, golden_set_id)
                queries, golden_set_name = parse_golden_items(stored.queries), stored.name
            described = config if config is not None else await self._describe(workspace_id, kb_id)
            row = Evaluation(
                id=new_id("ev"), workspace_id=workspace_id, kb_id=kb_id, golden_set_id=golden_set_id,
                golden_set_name=golden_set_name[:200], label=label, status="running", switch_id=switch_id,
                config={**described, "modes": [s.name for s in specs], "recall_k": recall_k},
                queries=len(queries or ()), results={}, created_by=actor,
            )  # fmt: skip
            session.add(row)
            await session.commit()
        filters = SearchFilters(workspace_id=workspace_id, kb_ids=(kb_id,))
        try:
            async with self._running:
                report = await evaluate(retriever, queries or (), filters, specs, recall_k=recall_k)
        except Exception as exc:
            reason = exc.message if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            await self._finish(row.id, status="failed", error=reason[:2000])
            raise
        return await self._finish(row.id, status="succeeded", report=report)

    async def _describe(self, workspace_id: str, kb_id: str) -> dict[str, Any]:
        return await self.describe(workspace_id, kb_id) if self.describe is not None else {}

    async def _finish(
        self, evaluation_id: str, *, status: str, report: EvaluationReport | None = None, error: str | None = None
    ) -> EvaluationInfo:
        async with self.sessions() as session:
            row = await session.get(Evaluation, evaluation_id)
            assert row is not None  # rows are deleted only with their knowledge base
            row.status, row.error, row.finished_at = status, error, now()
            if report is not None:
                row.results = msgspec.to_builtins(report)
            await session.commit()
            return EvaluationInfo.of(row, await _previous(session, row))

    async def list_evaluations(
        self, workspace_id: str, kb_id: str, *, page: int = 1, limit: int = 20
    ) -> Page[EvaluationInfo]:
        """The knowledge base's evaluations, newest first."""
        where = [Evaluation.workspace_id == workspace_id, Evaluation.kb_id == kb_id]
        async with self.sessions() as session:
            await _kb(session, workspace_id, kb_id)
            order = [Evaluation.created_at.desc(), Evaluation.id.desc()]
            total, rows = await fetch_page(session, Evaluation, where, order, page=page, limit=limit)
            return Page(items=[EvaluationInfo.of(r) for r in rows], page=page, limit=limit, total=total)

    async def get(self, workspace_id: str, kb_id: str, evaluation_id: str) -> EvaluationInfo:
        async with self.sessions() as session:
            row = await get_in_workspace(session, Evaluation, evaluation_id, workspace_id, "evaluation")
            if row.kb_id != kb_id:
                raise NotFound("evaluation", evaluation_id)
            return EvaluationInfo.of(row, await _previous(session, row))


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("name must be 1 to 200 characters")
    return name


async def _kb(session: AsyncSession, workspace_id: str, kb_id: str) -> KnowledgeBase:
    return await get_in_workspace(session, KnowledgeBase, kb_id, workspace_id, "knowledge base")


async def _golden_set(session: AsyncSession, workspace_id: str, kb_id: str, golden_set_id: str) -> GoldenSet:
    row = await get_in_workspace(session, GoldenSet, golden_set_id, workspace_id, "golden set")
    if row.kb_id != kb_id:
        raise NotFound("golden set", golden_set_id)
    return row


async def _previous(session: AsyncSession, row: Evaluation) -> Evaluation | None:
    """The latest successful evaluation before ``row`` of the same golden set (by id, else by name)."""
    if row.status != "succeeded":
        return None
    same = (
        Evaluation.golden_set_id == row.golden_set_id
        if row.golden_set_id is not None
        else Evaluation.golden_set_name == row.golden_set_name
    )
    query = (
        select(Evaluation)
        .where(
            Evaluation.kb_id == row.kb_id, Evaluation.status == "succeeded", Evaluation.id != row.id, same,
            Evaluation.created_at <= row.created_at,
        )
        .order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
        .limit(1)
    )  # fmt: skip
    previous: Evaluation | None = await session.scalar(query)
    return previous


def _delta(row: Evaluation, previous: Evaluation) -> dict[str, dict[str, float]]:
    before = {m["mode"]: m for m in (previous.results or {}).get("modes", [])}
    out: dict[str, dict[str, float]] = {}
    for mode in (row.results or {}).get("modes", []):
        old = before.get(mode["mode"])
        if old is not None:
            out[mode["mode"]] = {metric: round(mode[metric] - old[metric], 4) for metric in METRICS}
    return out


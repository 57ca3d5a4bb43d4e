"""Run a golden set through a ``Retriever`` in several search modes and score each mode.

Every query runs one at a time through ``Retriever.retrieve`` (what users' searches run): file-level judgments
with ``group_by="file"`` (a file ranks by its best chunk), chunk-level ones per chunk. Latency is the wall time
of that call, after a short untimed warm-up per mode.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from engine.errors import InvalidInput
from engine.evaluation.golden import GoldenQuery
from engine.evaluation.metrics import score
from engine.retrieval import GroupBy, Retriever, SearchHit, SearchRequest
from engine.types import SearchFilters

WORST = 5  # worst queries listed per mode
SHOWN = 5  # retrieved references shown per worst query
WARM_UP_QUERIES = 2


@dataclass(frozen=True)
class ModeSpec:
    """One way of searching: ``fields`` are ``SearchRequest`` fields (``mode``, ``fusion``); ``rerank`` adds the
    configured reranker (modes without it run without, whatever the retriever has)."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    rerank: bool = False


DEFAULT_MODES = (
    ModeSpec("dense", {"mode": "dense"}),
    ModeSpec("sparse", {"mode": "sparse"}),
    ModeSpec("hybrid", {"mode": "hybrid"}),
)
RERANK_MODE = ModeSpec("hybrid_rerank", {"mode": "hybrid"}, rerank=True)
MODE_NAMES = (*(m.name for m in DEFAULT_MODES), RERANK_MODE.name)


def modes_for(names: Sequence[str] | None, *, reranker: bool) -> list[ModeSpec]:
    """The named modes (default: dense, sparse, hybrid, and hybrid_rerank when a reranker is configured)."""
    known = {m.name: m for m in (*DEFAULT_MODES, RERANK_MODE)}
    if not names:
        return [*DEFAULT_MODES, *([RERANK_MODE] if reranker else [])]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInput(f"unknown mode(s) {unknown}: use {', '.join(MODE_NAMES)}")
    if RERANK_MODE.name in names and not reranker:
        raise InvalidInput("hybrid_rerank needs a reranker (RAGLINE_RERANKER)")
    return [known[n] for n in dict.fromkeys(names)]


class QueryResult(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    query: str
    ndcg_at_10: float
    recall_at_k: float
    mrr_at_10: float
    first_relevant_rank: int | None  # 1-based; None: no relevant item in the results
    latency_ms: float
    expected: list[str]  # the references graded > 0
    retrieved: list[str]  # the first references found (file names, or chunk ids)


class ModeReport(msgspec.Struct, frozen=True, kw_only=True):
    mode: str
    ndcg_at_10: float
    recall_at_k: float
    mrr_at_10: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_mean_ms: float
    queries: int
    worst: list[QueryResult]


class EvaluationReport(msgspec.Struct, frozen=True, kw_only=True):
    recall_k: int
    queries: int
    modes: list[ModeReport]

    def mode(self, name: str) -> ModeReport:
        return next(m for m in self.modes if m.mode == name)


async def evaluate(
    retriever: Retriever,
    queries: Sequence[GoldenQuery],
    filters: SearchFilters,
    modes: Sequence[ModeSpec] = DEFAULT_MODES,
    *,
    recall_k: int = 100,
    warm_up: int = WARM_UP_QUERIES,
) -> EvaluationReport:
    """Score ``queries`` in every mode. ``filters`` scopes the searches (workspace, knowledge base).

    Raises:
        InvalidInput: No queries, ``recall_k`` out of range, or a mode that needs a reranker the retriever lacks.
    """
    if not queries:
        raise InvalidInput("the golden set has no queries")
    if not 1 <= recall_k <= retriever.max_top_k:
        raise InvalidInput(f"recall_k must be from 1 to {retriever.max_top_k}")
    plain = copy.copy(retriever)
    plain.reranker = None
    reports = []
    for spec in modes:
        if spec.rerank and retriever.reranker is None:
            raise InvalidInput(f"mode {spec.name} needs a reranker (RAGLINE_RERANKER)")
        reports.append(await _run_mode(retriever if spec.rerank else plain, queries, filters, spec, recall_k, warm_up))
    return EvaluationReport(recall_k=recall_k, queries=len(queries), modes=reports)


async def _run_mode(
    retriever: Retriever, queries: Sequence[GoldenQuery], filters: SearchFilters, spec: ModeSpec, recall_k: int,
    warm_up: int,
) -> ModeReport:  # fmt: skip
    depth = max(recall_k, 10)
    for query in queries[:warm_up]:
        await retriever.retrieve(_request(query, filters, spec, depth))
    runs: dict[str, list[str]] = {}
    latency: dict[str, float] = {}
    for query in queries:
        started = time.perf_counter()
        hits = await retriever.retrieve(_request(query, filters, spec, depth))
        latency[query.id] = (time.perf_counter() - started) * 1000
        runs[query.id] = [_reference(hit, query) for hit in hits]
    scores = score({q.id: q.judgments for q in queries}, runs, recall_k=recall_k)
    results = [
        QueryResult(
            id=q.id, query=q.query, ndcg_at_10=round(scores[q.id].ndcg, 4), recall_at_k=round(scores[q.id].recall, 4),
            mrr_at_10=round(scores[q.id].mrr, 4), first_relevant_rank=scores[q.id].first_relevant_rank,
            latency_ms=round(latency[q.id], 1), expected=[ref for ref, grade in q.judgments.items() if grade > 0],
            retrieved=runs[q.id][:SHOWN],
        )
        for q in queries
    ]  # fmt: skip
    times = sorted(latency.values())
    worst = sorted(results, key=lambda r: (r.ndcg_at_10, r.recall_at_k, r.mrr_at_10))[:WORST]
    return ModeReport(
        mode=spec.name,
        ndcg_at_10=round(statistics.fmean(scores[q.id].ndcg for q in queries), 4),
        recall_at_k=round(statistics.fmean(scores[q.id].recall for q in queries), 4),
        mrr_at_10=round(statistics.fmean(scores[q.id].mrr for q in queries), 4),
        latency_p50_ms=round(statistics.median(times), 1),
        latency_p95_ms=round(times[int(0.95 * (len(times) - 1))], 1),
        latency_mean_ms=round(statistics.fmean(times), 1),
        queries=len(queries),
        worst=[r for r in worst if r.ndcg_at_10 < 1.0],
    )


def _request(query: GoldenQuery, filters: SearchFilters, spec: ModeSpec, depth: int) -> SearchRequest:
    group_by: GroupBy = "chunk" if query.level == "chunk" else "file"
    return SearchRequest(query=query.query, filters=filters, top_k=depth, group_by=group_by, **spec.fields)


def _reference(hit: SearchHit, query: GoldenQuery) -> str:
    """What a hit is called in the query's judgments: the chunk id, or the file's name or id as judged."""
    chunk = hit.chunk
    if query.level == "chunk":
        return chunk.id
    if chunk.file_id in query.files:
        return chunk.file_id
    return chunk.file_name

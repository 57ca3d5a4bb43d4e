"""SciFact helpers for the retrieval benchmark: load the BEIR files, ingest through the real pipeline, score runs.

The corpus is ingested the way users' files are: one Markdown file per document (``# title`` + abstract)
uploaded with ``KnowledgeService.add_file`` and processed by ``IngestWorker.drain`` (sandboxed parse,
token chunking, MiniLM + BM25 vectors, publish). A manifest in the data directory records the workspace
and knowledge base, so later runs reuse the ingested store.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from api.container import Services, open_services
from engine.db.models import File
from engine.evaluation import GoldenQuery, metrics
from engine.settings import Settings
from engine.types import SearchFilters

DATA = Path("/work/shared/data/scifact")
MANIFEST = "scifact-manifest.json"


@dataclass(frozen=True)
class SciFact:
    corpus: dict[str, tuple[str, str]]  # _id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}


def load(split: str, data: Path = DATA) -> SciFact:
    """The corpus, and the queries that have judgements in ``qrels/{split}.tsv``."""
    corpus: dict[str, tuple[str, str]] = {}
    with (data / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            corpus[str(row["_id"])] = (row.get("title") or "", row.get("text") or "")
    qrels: dict[str, dict[str, int]] = {}
    with (data / "qrels" / f"{split}.tsv").open(encoding="utf-8") as fh:
        next(fh)  # header
        for line in fh:
            qid, did, score = line.strip().split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    queries: dict[str, str] = {}
    with (data / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return SciFact(corpus=corpus, queries=queries, qrels=qrels)


def markdown(title: str, text: str) -> bytes:
    return f"# {title.strip()}\n\n{text.strip()}\n".encode()


@dataclass(frozen=True)
class Ingested:
    services: Services
    workspace_id: str
    kb_id: str
    seconds: float  # ingest time of this run (0 when the store was reused)
    ready: frozenset[str]  # ids of the documents that are searchable (all of them once the ingest finished)
    complete: bool


async def open_ingested(
    settings: Settings, corpus: Mapping[str, tuple[str, str]], *, reingest: bool, budget_s: float | None = None
) -> Ingested:
    """Open the services on ``settings.data_dir``, ingesting the corpus first unless a finished ingest is there.

    With ``budget_s`` the ingest stops after that many seconds and the result is partial (``complete`` false);
    the queue is durable, so the next call carries on where this one stopped.
    """
    manifest_path = settings.data_dir / MANIFEST
    if reingest and settings.data_dir.exists():
        shutil.rmtree(settings.data_dir)
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    if manifest is not None and manifest.get("complete"):
        services = await open_services(settings)
        ready = await _ready_docs(services)
        return Ingested(services, manifest["workspace_id"], manifest["kb_id"], 0.0, ready, True)
    if manifest is None or not manifest.get("uploaded"):  # nothing usable yet: start from an empty directory
        if settings.data_dir.exists():
            shutil.rmtree(settings.data_dir)
        services = await open_services(settings)
        manifest = await _upload(services, settings, corpus)
    else:  # uploaded but not fully ingested: the queue is durable, so just keep draining it
        services = await open_services(settings)
        await services.worker.recover()
    started = time.monotonic()
    complete = await _drain(services, manifest["workspace_id"], len(corpus), started, budget_s)
    seconds = time.monotonic() - started
    while getattr(services.store, "building_index", False):  # noqa: ASYNC110  (a build the ingest started)
        await asyncio.sleep(0.5)
    spent = manifest.get("ingest_seconds", 0.0) + seconds
    manifest = {**manifest, "complete": complete, "ingest_seconds": round(spent, 1)}
    manifest_path.write_text(json.dumps(manifest))
    ready = await _ready_docs(services)
    return Ingested(services, manifest["workspace_id"], manifest["kb_id"], seconds, ready, complete)


async def _upload(services: Services, settings: Settings, corpus: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    issued = await services.access.bootstrap()
    assert issued is not None, "a fresh data directory has no users yet"
    workspace_id = (await services.access.authenticate(issued.secret)).workspace_id
    kb = await services.knowledge.create_kb(workspace_id, "scifact")
    for doc_id, (title, text) in corpus.items():
        source = io.BytesIO(markdown(title, text))
        await services.knowledge.add_file(workspace_id, kb.id, filename=f"{doc_id}.md", source=source)
    manifest = {"workspace_id": workspace_id, "kb_id": kb.id, "uploaded": True,
                "chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap}
    (settings.data_dir / MANIFEST).write_text(json.dumps(manifest))
    return manifest


async def _drain(services: Services, workspace_id: str, total: int, started: float, budget_s: float | None) -> bool:
    """Run the worker's tasks (``RAGLINE_INGEST_WORKERS`` of them) until no file is queued or processing.

    Returns:
        Whether the queue is empty (false when ``budget_s`` ran out first).
    """
    deadline = started + budget_s if budget_s is not None else float("inf")
    services.events.start()  # as in a server: file events go through the event log's batching writer
    services.worker.start()
    reported = time.monotonic()
    try:
        while await _pending(services):  # checked every second, so ``ingest_seconds`` is the drain's own time
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(1.0)
            if time.monotonic() - reported >= 30.0:
                reported = time.monotonic()
                files = await services.store.file_ids()
                chunks = await services.store.count(SearchFilters(workspace_id=workspace_id))
                print(f"ingest: {len(files)}/{total} files, {chunks} chunks, {reported - started:.0f}s", flush=True)
    finally:
        await services.worker.stop()
        await services.events.stop()
    return True


async def _ready_docs(services: Services) -> frozenset[str]:
    async with services.sessions() as session:
        names = await session.scalars(select(File.name).where(File.status == "ready"))
        return frozenset(name.rsplit(".", 1)[0] for name in names)


async def _pending(services: Services) -> bool:
    async with services.sessions() as session:
        busy = select(File.id).where(File.status.in_(("queued", "processing"))).limit(1)
        return await session.scalar(busy) is not None


def golden_queries(data: SciFact, query_ids: Sequence[str]) -> list[GoldenQuery]:
    """The qrels as a golden set over the ingested files (``{doc id}.md``), for ``engine.evaluation``."""
    return [
        GoldenQuery(id=qid, query=data.queries[qid], files={f"{doc}.md": g for doc, g in data.qrels[qid].items()})
        for qid in query_ids
    ]


# -- offline fusion simulation, for tuning on cached per-query result lists ---------------------------

Ranked = list[tuple[str, float]]  # (chunk file name, score), best first


def rrf(lists: Sequence[Ranked], *, k: float = 60.0, weights: Sequence[float] | None = None) -> Ranked:
    """Weighted reciprocal-rank fusion as Qdrant computes it: ``1 / ((rank + 1) / w + k - 1)``, rank from 0.

    A weight stretches its list's ranks (w=2: the 4th hit scores like the 2nd), it does not scale scores.
    """
    weights = weights or [1.0] * len(lists)
    fused: dict[str, float] = {}
    for ranked, weight in zip(lists, weights, strict=True):
        for rank, (key, _) in enumerate(ranked):
            fused[key] = fused.get(key, 0.0) + 1.0 / ((rank + 1.0) / weight + k - 1.0)
    return sorted(fused.items(), key=lambda kv: -kv[1])


def dbsf(lists: Sequence[Ranked], *, weights: Sequence[float] | None = None) -> Ranked:
    """Distribution-based score fusion as Qdrant computes it: each list's scores mapped by mean +- 3 sample
    standard deviations (no clamping; a single or constant list scores 0.5), optionally weighted, then summed."""
    weights = weights or [1.0] * len(lists)
    fused: dict[str, float] = {}
    for ranked, weight in zip(lists, weights, strict=True):
        if not ranked:
            continue
        scores = [s for _, s in ranked]
        mean = sum(scores) / len(scores)
        var = sum((s - mean) ** 2 for s in scores) / (len(scores) - 1) if len(scores) > 1 else 0.0
        low, high = mean - 3 * math.sqrt(var), mean + 3 * math.sqrt(var)
        for key, score in ranked:
            norm = 0.5 if var == 0 else (score - low) / (high - low)
            fused[key] = fused.get(key, 0.0) + weight * norm
    return sorted(fused.items(), key=lambda kv: -kv[1])


def group_best(ranked: Ranked, doc_of: Mapping[str, str]) -> Ranked:
    """Collapse chunk keys to documents, each scored by its best chunk (lists are best first)."""
    best: dict[str, float] = {}
    for key, score in ranked:
        best.setdefault(doc_of[key], score)
    return list(best.items())


async def ranked_lists(ingested: Ingested, query: str, depth: int) -> tuple[Ranked, Ranked, dict[str, str]]:
    """The store's dense and sparse chunk rankings for one query, as (chunk id, score) lists, and chunk -> doc."""
    from engine.types import VectorQuery

    retriever = ingested.services.retriever
    filters = SearchFilters(workspace_id=ingested.workspace_id, kb_ids=(ingested.kb_id,))
    dense = await retriever.embedder.embed_query(query)
    sparse = retriever.sparse.encode_query(query)
    store = ingested.services.store
    dense_hits = await store.search(VectorQuery(mode="dense", filters=filters, limit=depth, dense=dense))
    sparse_hits = await store.search(VectorQuery(mode="sparse", filters=filters, limit=depth, sparse=sparse))
    doc_of = {hit.chunk.id: hit.chunk.file_name.rsplit(".", 1)[0] for hit in [*dense_hits, *sparse_hits]}
    return [(hit.chunk.id, hit.score) for hit in dense_hits], [(hit.chunk.id, hit.score) for hit in sparse_hits], doc_of


def _mean_ndcg(runs: Sequence[Ranked], qrels: Sequence[Mapping[str, int]]) -> float:
    """Mean nDCG@10 by the evaluation code's metrics (trec_eval), over simulated document rankings."""
    judged = {str(i): rel for i, rel in enumerate(qrels)}
    scores = metrics.score(judged, {str(i): [doc for doc, _ in run] for i, run in enumerate(runs)}, recall_k=100)
    return sum(s.ndcg for s in scores.values()) / len(runs)


async def tune(ingested: Ingested, data: SciFact, query_ids: Sequence[str], depth: int = 400) -> dict[str, Any]:
    """Grid over fusion settings, simulated on cached dense/sparse rankings (mean nDCG@10 per setting).

    ``chunk``: fuse chunk rankings (what Qdrant's fusion does), then rank documents by their best chunk.
    ``doc``: rank documents by their best chunk in each list first, then fuse the document rankings.
    """
    cached = [await ranked_lists(ingested, data.queries[qid], depth) for qid in query_ids]
    qrels = [data.qrels[qid] for qid in query_ids]
    results: dict[str, float] = {}

    def run(name: str, fuse: Any) -> None:
        results[name] = round(_mean_ndcg([fuse(d, s, m) for d, s, m in cached], qrels), 4)

    run("dense", lambda d, s, m: group_best(d, m))
    run("sparse", lambda d, s, m: group_best(s, m))
    for prefetch in (100, 200, 400):
        for wd in (0.7, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0):
            run(f"chunk dbsf p{prefetch} wd{wd}",
                lambda d, s, m, p=prefetch, w=wd: group_best(dbsf([d[:p], s[:p]], weights=[w, 1.0]), m))
            run(f"doc dbsf p{prefetch} wd{wd}",
                lambda d, s, m, p=prefetch, w=wd: dbsf([group_best(d[:p], m), group_best(s[:p], m)], weights=[w, 1.0]))
        for k in (10, 60):
            for wd in (0.5, 1.0, 1.5, 2.0, 3.0):
                run(f"chunk rrf p{prefetch} k{k} wd{wd}",
                    lambda d, s, m, p=prefetch, k=k, w=wd: group_best(rrf([d[:p], s[:p]], k=k, weights=[w, 1.0]), m))
                run(f"doc rrf p{prefetch} k{k} wd{wd}",
                    lambda d, s, m, p=prefetch, k=k, w=wd: rrf([group_best(d[:p], m), group_best(s[:p], m)],
                                                                k=k, weights=[w, 1.0]))
    best = sorted(results.items(), key=lambda kv: -kv[1])
    report = {"queries": len(query_ids), "documents_ingested": len(ingested.ready), "best": best[:25],
              "all": results}
    print(json.dumps(report))
    for name, value in best[:25]:
        print(f"{value:.4f}  {name}")
    return report

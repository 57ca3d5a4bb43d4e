"""SciFact retrieval quality through the real pipeline: nDCG@10, recall@100, MRR@10 and latency per mode.

The corpus is uploaded as one Markdown file per abstract and ingested by the ingest worker (the chunking,
embedding and storage users get) into a data directory that later runs reuse. The qrels become a golden set
(``{doc id}.md`` files with their grades) scored by ``engine.evaluation`` (the code behind a knowledge base's
``/evaluations`` and ``ragline eval``): each mode runs one query at a time through ``Retriever.retrieve`` with
``group_by="file"`` (a document ranks by its best chunk), metrics by trec_eval (``pytrec_eval``).

    RAGLINE_TORCH_THREADS=2 .venv/bin/python benchmarks/retrieval_quality.py [--split train] [--reingest]

Tune only with ``--split train``; report ``--split test``. Prints one JSON object and a table, and writes the
object to ``--out``/retrieval_quality.json (``retrieval_quality_train.json`` for the train split,
``retrieval_quality_tune_<split>.json`` with ``--tune``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

import engine  # noqa: F401  (offline environment and thread limits before numpy/torch)
from benchmarks._results import add_out_argument, finish, run_info, write
from benchmarks._scifact import Ingested, SciFact, golden_queries, load, open_ingested
from engine.evaluation import ModeSpec, evaluate
from engine.retrieval import SearchRequest
from engine.settings import Settings
from engine.types import SearchFilters

# name -> SearchRequest fields; every mode runs with group_by="file": a document ranks by its best chunk.
MODES: dict[str, dict[str, Any]] = {
    "dense": {"mode": "dense"},
    "sparse": {"mode": "sparse"},
    "hybrid_rrf": {"mode": "hybrid", "fusion": "rrf"},
    "hybrid_dbsf": {"mode": "hybrid", "fusion": "dbsf"},
    "hybrid_default": {},  # SearchRequest's defaults
}
TUNABLE = ("mode", "fusion")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--data-dir", type=Path, default=None, help="default /tmp/ragline-scifact-{tokens}-{overlap}")
    parser.add_argument("--reingest", action="store_true", help="drop the data dir and ingest again")
    parser.add_argument("--chunk-tokens", type=int, default=None, help="default: RAGLINE_CHUNK_TOKENS or 200")
    parser.add_argument("--chunk-overlap", type=int, default=None, help="default: RAGLINE_CHUNK_OVERLAP or 40")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ", ".join(MODES))
    parser.add_argument("--max-queries", type=int, default=0, help="evaluate only the first N queries (0: all)")
    parser.add_argument(
        "--ingest-budget-s", type=float, default=None,
        help="stop ingesting after this long and evaluate the documents ingested so far (resumed next run)",
    )
    parser.add_argument("--tune", action="store_true", help="grid-search fusion settings offline (use --split train)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON result to this file")
    add_out_argument(parser)
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace) -> Settings:
    base = Settings.from_env()
    tokens = args.chunk_tokens or base.chunk_tokens
    overlap = base.chunk_overlap if args.chunk_overlap is None else args.chunk_overlap
    data_dir = args.data_dir or Path(f"/tmp/ragline-scifact-{tokens}-{overlap}")
    return msgspec.structs.replace(base, data_dir=data_dir, chunk_tokens=tokens, chunk_overlap=overlap)


async def evaluate_mode(ingested: Ingested, data: SciFact, name: str, max_queries: int) -> dict[str, float]:
    """Score one mode with the evaluation code users run on their knowledge bases (``engine.evaluation``):
    every query once, after two warm-up queries, ``group_by="file"`` (a document ranks by its best chunk)."""
    filters = SearchFilters(workspace_id=ingested.workspace_id, kb_ids=(ingested.kb_id,))
    queries = golden_queries(data, evaluable(data, ingested)[: max_queries or None])
    report = await evaluate(ingested.services.retriever, queries, filters, [ModeSpec(name, MODES[name])], recall_k=100)
    result = report.modes[0]
    return {
        "ndcg@10": result.ndcg_at_10,
        "recall@100": result.recall_at_k,
        "mrr@10": result.mrr_at_10,
        "latency_p50_ms": result.latency_p50_ms,
        "latency_p95_ms": result.latency_p95_ms,
        "queries": result.queries,
    }


def evaluable(data: SciFact, ingested: Ingested) -> list[str]:
    """Queries whose relevant documents are all searchable (all queries once the ingest is complete)."""
    return [qid for qid in sorted(data.queries, key=int) if set(data.qrels[qid]) <= ingested.ready]


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [f"{'mode':<22} {'nDCG@10':>8} {'R@100':>7} {'MRR@10':>7} {'p50 ms':>7}"]
    for name, r in results.items():
        lines.append(
            f"{name:<22} {r['ndcg@10']:>8.4f} {r['recall@100']:>7.4f} {r['mrr@10']:>7.4f} {r['latency_p50_ms']:>7.1f}"
        )
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    run = run_info()
    settings = settings_for(args)
    data = load(args.split)
    ingested = await open_ingested(settings, data.corpus, reingest=args.reingest, budget_s=args.ingest_budget_s)
    try:
        chunks = await ingested.services.store.count(SearchFilters(workspace_id=ingested.workspace_id))
        if args.tune:
            from benchmarks._scifact import tune

            tuned = await tune(ingested, data, evaluable(data, ingested)[: args.max_queries or None])
            write(args.out, f"retrieval_quality_tune_{args.split}", {**tuned, "run": finish(run)})
            return tuned
        results = {}
        for name in args.modes.split(","):
            results[name] = await evaluate_mode(ingested, data, name, args.max_queries)
    finally:
        await ingested.services.close()
    defaults = SearchRequest(query="x", filters=SearchFilters(workspace_id="x"))
    report = {
        "dataset": "scifact",
        "split": args.split,
        "documents": len(data.corpus),
        "documents_ingested": len(ingested.ready),
        "complete": ingested.complete,  # false: a partial corpus (fewer distractors), not comparable to BEIR
        "chunks": chunks,
        "embedder": settings.embedder,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "ingest_seconds": round(ingested.seconds, 1),
        "default_hybrid": {f: getattr(defaults, f) for f in TUNABLE},
        "results": results,
        "run": finish(run),
    }
    print(json.dumps(report))
    print(table(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    write(args.out, "retrieval_quality" if args.split == "test" else f"retrieval_quality_{args.split}", report)
    return report


if __name__ == "__main__":
    asyncio.run(main())

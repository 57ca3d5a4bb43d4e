"""``ragline eval --kb NAME golden.jsonl``: the knowledge base's evaluation from the terminal (same code and history
as ``POST /api/v1/knowledge-bases/{id}/evaluations``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from engine.errors import EngineError
from engine.evaluation import parse_golden

if TYPE_CHECKING:
    from api.container import Services
    from api.services.evaluations import EvaluationInfo


def add_eval_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = sub.add_parser("eval", help="evaluate search on a knowledge base with a golden set (JSON or JSONL)")
    evaluate.add_argument("golden", type=Path, help="queries with their relevant files or chunks (see the README)")
    evaluate.add_argument("--kb", required=True, help="the knowledge base's name")
    evaluate.add_argument("--workspace", default="default")
    evaluate.add_argument("--modes", default="", help="comma-separated: dense, sparse, hybrid, hybrid_rerank")
    evaluate.add_argument("--recall-k", type=int, default=10)
    evaluate.add_argument("--label", default="", help="what changed since the last evaluation (kept in the history)")
    evaluate.add_argument("--json", action="store_true", help="print the stored evaluation as JSON")


async def run_eval(services: Services, args: argparse.Namespace, workspace_id: str, kb_id: str) -> int:
    if not args.golden.is_file():
        raise EngineError(f"no such file: {args.golden}")
    queries = parse_golden(args.golden.read_bytes())
    info = await services.evaluations.run(
        workspace_id, kb_id, queries=queries, golden_set_name=args.golden.name, recall_k=args.recall_k,
        modes=[m.strip() for m in args.modes.split(",") if m.strip()] or None, label=args.label,
    )  # fmt: skip
    if args.json:
        print(json.dumps(msgspec.to_builtins(info), indent=2))
    else:
        print(report(info, args.kb))
    return 0


def report(info: EvaluationInfo, kb_name: str) -> str:
    k = info.recall_k
    lines = [
        f"evaluated {info.queries} queries of {info.golden_set_name} on {kb_name!r} ({info.id})",
        f"{'mode':<15} {'nDCG@10':>8} {f'recall@{k}':>10} {'MRR@10':>7} {'p50 ms':>7} {'p95 ms':>7}",
    ]
    for mode in info.modes:
        lines.append(
            f"{mode['mode']:<15} {mode['ndcg_at_10']:>8.4f} {mode['recall_at_k']:>10.4f} {mode['mrr_at_10']:>7.4f} "
            f"{mode['latency_p50_ms']:>7.1f} {mode['latency_p95_ms']:>7.1f}"
        )
    if info.delta:
        changes = ", ".join(f"{mode} {d['ndcg_at_10']:+.4f}" for mode, d in info.delta.items())
        lines.append(f"nDCG@10 since {info.previous_id}: {changes}")
    worst_mode = next((m for m in info.modes if m["mode"] == "hybrid"), info.modes[0] if info.modes else None)
    if worst_mode and worst_mode["worst"]:
        lines.append(f"worst queries ({worst_mode['mode']}):")
        for q in worst_mode["worst"]:
            got = ", ".join(q["retrieved"][:3]) or "nothing"
            lines.append(
                f"  {q['id']}: nDCG@10 {q['ndcg_at_10']:.4f} {q['query'][:60]!r} expected {', '.join(q['expected'])}; "
                f"found {got}"
            )
    return "\n".join(lines)

"""Chunk size and overlap on SciFact: quality per mode, and what each setting costs the embedding model.

For each ``tokens/overlap`` setting: the corpus ingested with it through the real pipeline
(``retrieval_quality.py``'s data directory for that setting, reused by later runs), nDCG@10 per mode on
``--split``; the chunks and model word pieces per document over the whole corpus; and the bare model's
documents/s on the chunks of the first ``--cost-docs`` documents (settings alternating, ``--rounds`` rounds,
the median), which is what ingest's documents/s follows. Tune with ``--split train``, report ``--split test``
for the setting train picked.

    RAGLINE_TORCH_THREADS=2 .venv/bin/python benchmarks/chunking.py --split train --settings 200/40,160/16,160/0

Prints one JSON object and a table, and writes the object to ``--out``/chunking_<split>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: F401  (offline environment and thread limits before numpy/torch)
from benchmarks import retrieval_quality
from benchmarks._results import add_out_argument, finish, run_info, write
from benchmarks._scifact import load, markdown
from benchmarks.ingest import embed_texts
from engine.embedders import create_embedder
from engine.settings import Settings
from ingest.worker import EMBED_BATCH

Setting = tuple[int, int]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("test", "train"), default="train")
    parser.add_argument("--settings", default="200/40,200/0,160/16", help="comma-separated tokens/overlap")
    parser.add_argument("--modes", default="hybrid_default,dense,sparse", help="retrieval_quality.py's modes")
    parser.add_argument("--cost-docs", type=int, default=1000, help="documents whose chunks time the model (0: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="bare-model rounds, settings alternating")
    add_out_argument(parser)
    return parser.parse_args(argv)


def parse_setting(text: str) -> Setting:
    tokens, _, overlap = text.partition("/")
    return int(tokens), int(overlap or 0)


async def quality(setting: Setting, split: str, modes: str) -> dict[str, Any]:
    """Ingest (or reuse) the corpus with ``setting`` and score ``modes`` on ``split``."""
    tokens, overlap = setting
    args = ["--split", split, "--chunk-tokens", str(tokens), "--chunk-overlap", str(overlap), "--modes", modes]
    report = await retrieval_quality.main([*args, "--out", ""])
    return {"chunks": report["chunks"], "ingest_seconds": report["ingest_seconds"], "results": report["results"]}


def model_cost(texts: dict[Setting, list[str]], documents: int, embedder: Any, rounds: int) -> dict[Setting, Any]:
    """The bare model's documents/s on each setting's chunks, settings alternating round by round."""
    walls: dict[Setting, list[float]] = {setting: [] for setting in texts}
    order = list(texts)
    for round_ in range(rounds):
        for setting in order if round_ % 2 == 0 else order[::-1]:
            batch_texts = texts[setting]
            started = time.perf_counter()
            for offset in range(0, len(batch_texts), EMBED_BATCH):
                embedder.encode_sync(batch_texts[offset : offset + EMBED_BATCH])
            walls[setting].append(time.perf_counter() - started)
    return {
        setting: {"wall_s": [round(w, 2) for w in runs], "docs_per_s": round(documents / statistics.median(runs), 1),
                  "chunks_per_s": round(len(texts[setting]) / statistics.median(runs), 1)}
        for setting, runs in walls.items()
    }  # fmt: skip


def table(rows: dict[str, dict[str, Any]], modes: list[str]) -> str:
    head = f"{'setting':<9} " + " ".join(f"{m[:14]:>14}" for m in modes)
    lines = [head + f" {'chunks':>7} {'wp/doc':>7} {'model docs/s':>12}"]
    for name, row in rows.items():
        scores = " ".join(f"{row['results'][m]['ndcg@10']:>14.4f}" for m in modes)
        cost = row.get("model", {}).get("docs_per_s", float("nan"))
        lines.append(f"{name:<9} {scores} {row['chunks']:>7} {row['word_pieces_per_doc']:>7.1f} {cost:>12.1f}")
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    run = run_info()
    settings = [parse_setting(s) for s in args.settings.split(",")]
    modes = args.modes.split(",")
    rows = {setting: await quality(setting, args.split, args.modes) for setting in settings}

    embedder = create_embedder(Settings.from_env())
    embedder.warm_up()  # type: ignore[attr-defined]
    docs = [(doc_id, markdown(title, text).decode()) for doc_id, (title, text) in load(args.split).corpus.items()]
    for setting in settings:
        texts = embed_texts(docs, embedder, *setting)
        rows[setting]["word_pieces_per_doc"] = round(sum(map(embedder.token_count, texts)) / len(docs), 1)
    if args.cost_docs:
        sample = docs[: args.cost_docs]
        costs = model_cost({s: embed_texts(sample, embedder, *s) for s in settings}, len(sample), embedder, args.rounds)
        for setting, cost in costs.items():
            rows[setting]["model"] = cost
    named = {f"{tokens}/{overlap}": row for (tokens, overlap), row in rows.items()}
    report = {
        "dataset": "scifact", "split": args.split, "documents": len(docs), "modes": modes,
        "cost_docs": args.cost_docs, "rounds": args.rounds, "settings": named, "run": finish(run),
    }  # fmt: skip
    print(json.dumps(report))
    print(table(named, modes))
    write(args.out, f"chunking_{args.split}", report)
    return report


if __name__ == "__main__":
    asyncio.run(main())

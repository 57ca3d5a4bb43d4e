"""Embedding throughput per backend on real SciFact text: chunks/s, queries/s, single-query latency.

Usage (from the repository root):
    .venv/bin/python -m benchmarks.embedding [--runs 5] [--chunks 128] [--backends torch-fp32-2t,onnx-int8-2t]

Backends: torch-fp32-{1,2}t (sentence-transformers, the default embedder), onnx-fp32-2t (the same export
without quantisation, to separate the graph-fusion gain from the int8 gain), onnx-int8-{1,2}t, and
onnx-int8-fusedln-{1,2}t (the int8 export with onnxruntime's SkipLayerNormalization kept, as recipe 2 shipped it,
to measure what ``onnx_rewrites`` buys).
Every round runs every backend once (interleaved, so background load hits all of them alike); the result
is the median over rounds, and each round records the 1-minute load average (this machine is shared);
``chunk_cpu_ms`` (process CPU time per chunk) is the number to trust for 1-thread backends under load.
Prints a table on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: F401  (offline env + BLAS threads before numpy/torch)

DATA = Path(os.environ.get("SCIFACT_DIR", "/work/shared/data/scifact"))
CACHE = Path(os.environ.get("EMBED_BENCH_CACHE", "/tmp/ragline-embed-bench"))
ALL_BACKENDS = (
    "torch-fp32-1t", "torch-fp32-2t", "onnx-fp32-2t", "onnx-int8-1t", "onnx-int8-2t", "onnx-int8-fusedln-1t",
    "onnx-int8-fusedln-2t",
)  # fmt: skip
CHUNK_WORDPIECES = 200


def chunk_texts(count: int) -> list[str]:
    """Real corpus text cut at ~200 word-pieces (at a token boundary of the original string)."""
    from engine.embedders.onnx_int8 import _load_tokenizer
    from engine.embedders.sentence_transformer import bundled_model_path

    tokenizer = _load_tokenizer(bundled_model_path())
    chunks: list[str] = []
    with (DATA / "corpus.jsonl").open() as corpus:
        for line in corpus:
            doc = json.loads(line)
            text = f"{doc['title']} {doc['text']}"
            offsets = tokenizer.encode(text, add_special_tokens=False).offsets
            if len(offsets) >= CHUNK_WORDPIECES:
                chunks.append(text[: offsets[CHUNK_WORDPIECES - 1][1]])
            if len(chunks) == count:
                break
    return chunks


def test_queries() -> list[str]:
    with (DATA / "qrels" / "test.tsv").open() as qrels:
        wanted = {line.split("\t")[0] for line in qrels.read().splitlines()[1:] if line.strip()}
    with (DATA / "queries.jsonl").open() as queries:
        rows = [json.loads(line) for line in queries]
    return [row["text"] for row in rows if row["_id"] in wanted]


def build_backend(name: str) -> tuple[Any, Callable[[], None]]:
    """The embedder for ``name`` and a hook that applies its thread setting before each measurement."""
    threads = int(name.rsplit("-", 1)[1].rstrip("t"))
    if name.startswith("torch"):
        import torch

        from engine.embedders.sentence_transformer import SentenceTransformerEmbedder

        # torch's thread count is process-wide: set it before every measurement of this backend
        return SentenceTransformerEmbedder(threads=threads), lambda: torch.set_num_threads(threads)
    from engine.embedders.onnx_int8 import OnnxInt8Embedder

    onnx_file = None
    if "fp32" in name:
        onnx_file = comparison_export("fp32-fused", int8=False)
    elif "fusedln" in name:
        onnx_file = comparison_export("int8-fusedln", int8=True, fused_layer_norm=True)
    return OnnxInt8Embedder(CACHE / "int8", threads=threads, onnx_file=onnx_file), lambda: None


def comparison_export(name: str, *, int8: bool, fused_layer_norm: bool = False) -> Path:
    """An export variant for comparisons, made once into ``CACHE`` per export recipe (never a stale one)."""
    from engine.embedders.onnx_export import RECIPE_VERSION, export_model
    from engine.embedders.sentence_transformer import bundled_model_path

    path = CACHE / f"{name}-recipe{RECIPE_VERSION}.onnx"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        export_model(bundled_model_path(), path, int8=int8, fused_layer_norm=fused_layer_norm)
    return path


def measure(embedder: Any, chunks: list[str], queries: list[str], latency_queries: int) -> dict[str, float]:
    import anyio

    started, cpu_started = time.perf_counter(), time.process_time()
    embedder.encode_sync(chunks)
    chunk_rate = len(chunks) / (time.perf_counter() - started)
    # CPU time is far less sensitive to other people's load than wall time (compare 1-thread backends)
    chunk_cpu_ms = (time.process_time() - cpu_started) * 1000 / len(chunks)
    started = time.perf_counter()
    embedder.encode_sync(queries)
    query_rate = len(queries) / (time.perf_counter() - started)

    async def one_by_one() -> list[float]:
        latencies = []
        for query in queries[:latency_queries]:
            started = time.perf_counter()
            await embedder.embed_query(query)
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    latencies = sorted(anyio.run(one_by_one))
    return {
        "chunks_per_s": chunk_rate,
        "chunk_cpu_ms": chunk_cpu_ms,
        "queries_per_s": query_rate,
        "query_p50_ms": latencies[len(latencies) // 2],
        "query_p95_ms": latencies[int(len(latencies) * 0.95)],
    }


def run(backends: list[str], runs: int, chunk_count: int, latency_queries: int) -> dict[str, Any]:
    chunks, queries = chunk_texts(chunk_count), test_queries()
    built = {name: build_backend(name) for name in backends}
    for embedder, apply_threads in built.values():  # load/export outside the timings
        apply_threads()
        embedder.encode_sync(chunks[:4] + queries[:4])
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in backends}
    for round_no in range(runs):
        for name, (embedder, apply_threads) in built.items():
            apply_threads()
            load = os.getloadavg()[0]
            rounds[name].append({**measure(embedder, chunks, queries, latency_queries), "load1": load})
            print(f"round {round_no + 1}/{runs} {name}: {_fmt(rounds[name][-1])}", file=sys.stderr, flush=True)
    medians = {
        name: {key: round(statistics.median(r[key] for r in results), 2) for key in results[0]}
        for name, results in rounds.items()
    }
    return {
        "machine": {"cpus": os.cpu_count(), "cpu_flags": _simd_flags()},
        "setup": {"runs": runs, "chunks": len(chunks), "chunk_wordpieces": CHUNK_WORDPIECES,
                  "queries": len(queries), "latency_queries": latency_queries},
        "median": medians,
        "rounds": {name: [{k: round(v, 2) for k, v in r.items()} for r in rs] for name, rs in rounds.items()},
    }


def _fmt(row: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.1f}" for k, v in row.items())


def _simd_flags() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted({f for f in flags.split() if f.startswith(("avx", "amx")) or "vnni" in f})


def print_table(result: dict[str, Any]) -> None:
    columns = (("chunks/s", "chunks_per_s", 1), ("cpu ms/chunk", "chunk_cpu_ms", 1), ("queries/s", "queries_per_s", 1),
               ("q p50 ms", "query_p50_ms", 2), ("q p95 ms", "query_p95_ms", 2), ("load1", "load1", 2))
    print(f"{'backend':15}" + "".join(f" {title:>12}" for title, _, _ in columns), file=sys.stderr)
    for name, row in result["median"].items():
        print(f"{name:15}" + "".join(f" {row[key]:12.{digits}f}" for _, key, digits in columns), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=128)
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--backends", default=",".join(ALL_BACKENDS))
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(ALL_BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {ALL_BACKENDS}")
    result = run(backends, args.runs, args.chunks, args.latency_queries)
    print_table(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

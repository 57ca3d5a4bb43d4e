"""Two ONNX exports of the embedding model timed text by text, alternating, for a ratio that machine drift cannot move.

On a shared 2-core machine the same backend's CPU time per chunk drifts by 30 % within minutes, more than most
graph changes are worth, so ``embedding.py``'s round-by-round medians cannot rank close variants. Here every
text runs on A and on B back to back (the order swapped every other text), and the result is the median of the
per-text ratios B/A, for 200-word-piece SciFact chunks and for the SciFact test queries, at 1 and 2 threads.

Defaults: A = the export with onnxruntime's fused SkipLayerNormalization (recipe 2), B = the current export.

    .venv/bin/python benchmarks/embedding_paired.py [--a FILE.onnx] [--b FILE.onnx] [--chunks 128] [--reps 3]

Prints one JSON object and a table, and writes the object to ``--out``/embedding_paired.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: F401,I001  (offline environment and thread limits before numpy)

from benchmarks._results import add_out_argument, finish, run_info, write
from benchmarks.embedding import CACHE, chunk_texts, comparison_export, test_queries
from engine.embedders.onnx_int8 import OnnxInt8Embedder, _load_session, _load_tokenizer
from engine.embedders.sentence_transformer import bundled_model_path


def paired(a: Any, b: Any, inputs: list[list[int]], reps: int) -> dict[str, float]:
    import numpy as np

    def run(session: Any, ids: list[int]) -> float:
        batch = np.array([ids], dtype=np.int64)
        started = time.perf_counter()
        session.run(None, {"input_ids": batch, "attention_mask": np.ones_like(batch)})
        return time.perf_counter() - started

    for ids in inputs[:5]:  # warm both
        run(a, ids)
        run(b, ids)
    times: dict[Any, list[float]] = {a: [], b: []}
    for _ in range(reps):
        for index, ids in enumerate(inputs):
            for session in (a, b) if index % 2 else (b, a):
                times[session].append(run(session, ids))
    times_a, times_b = times[a], times[b]
    return {
        "a_p50_ms": round(statistics.median(times_a) * 1000, 3),
        "b_p50_ms": round(statistics.median(times_b) * 1000, 3),
        "b_over_a": round(statistics.median(tb / ta for ta, tb in zip(times_a, times_b, strict=True)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, help="ONNX file A (default: recipe 2, fused SkipLayerNormalization)")
    parser.add_argument("--b", type=Path, help="ONNX file B (default: the current export)")
    parser.add_argument("--chunks", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    add_out_argument(parser)
    args = parser.parse_args()
    file_a = args.a or comparison_export("int8-fusedln", int8=True, fused_layer_norm=True)
    file_b = args.b or OnnxInt8Embedder(CACHE / "int8").model_file
    tokenizer = _load_tokenizer(bundled_model_path())
    texts = {"chunk_200": chunk_texts(args.chunks), "query": test_queries()}
    inputs = {kind: [e.ids for e in tokenizer.encode_batch(batch)] for kind, batch in texts.items()}
    run = run_info()
    cases: dict[str, dict[str, float]] = {}
    for threads in (1, 2):
        a, b = _load_session(file_a, threads), _load_session(file_b, threads)
        for kind, ids in inputs.items():
            cases[f"{kind}_{threads}t"] = paired(a, b, ids, args.reps * (2 if kind == "query" else 1))
    texts_count = {kind: len(ids) for kind, ids in inputs.items()}
    report = {"a": str(file_a), "b": str(file_b), "texts": texts_count, "cases": cases, "run": finish(run)}
    print(json.dumps(report))
    print(f"\n{'case':12} {'A p50 ms':>9} {'B p50 ms':>9} {'B/A':>6}")
    for name, case in cases.items():
        print(f"{name:12} {case['a_p50_ms']:9.2f} {case['b_p50_ms']:9.2f} {case['b_over_a']:6.3f}")
    write(args.out, "embedding_paired", report)


if __name__ == "__main__":
    main()

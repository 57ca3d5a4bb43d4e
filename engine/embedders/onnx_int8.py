"""all-MiniLM-L6-v2 as an int8 ONNX model run by onnxruntime: same weights, same tokenizer, faster on CPU.

Why: torch fp32 embeds ~38 chunks/s on 2 cores and ingest waits on it. ``sentence-transformers[onnx]``
cannot be installed here (optimum pins an old transformers), so the model is exported once, on first
use, from the bundled safetensors into ``cache_dir``: ``torch.onnx.export(dynamo=False)`` of BertModel +
mean-pool + L2-normalise, onnxruntime's BERT fusions (Attention, SkipLayerNorm, BiasGelu), then dynamic
int8 quantisation with per-channel weight scales (per-tensor scales lose too much: cosine 0.95). The first layer's
FFN down-projection stays fp32 (see ``_fp32_nodes``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from engine.embedders.sentence_transformer import bundled_model_path

# Bump when the export recipe changes: the cache key includes it, so old exports are not reused.
RECIPE_VERSION = "2"
MODEL_FILE = "model.onnx"
META_FILE = "meta.json"
_MAX_TOKENS = 256
# MiniLM-L6 geometry, needed by onnxruntime's fusion passes.
_NUM_HEADS = 12
_HIDDEN = 384
# the export says what it does in one line of its own; these libraries' log lines, warnings and progress bars
# (hundreds of fusion and quantiser lines at INFO) stay out of the server's output
log = logging.getLogger("ragline")
_EXPORT_LIBRARIES = ("onnxruntime", "onnx", "torch", "transformers")


def weights_sha256(model_dir: Path) -> str:
    """sha256 of the source weights file (the export cache is keyed by it)."""
    digest = hashlib.sha256()
    with (model_dir / "model.safetensors").open("rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_key(model_dir: Path) -> str:
    """Cache key: source weights + export recipe + onnxruntime version (its quantiser writes the model)."""
    import onnxruntime

    material = f"{weights_sha256(model_dir)}|recipe={RECIPE_VERSION}|ort={onnxruntime.__version__}"
    return hashlib.sha256(material.encode()).hexdigest()[:20]


def ensure_exported(model_dir: Path, cache_dir: Path) -> Path:
    """Return the quantised ONNX model for ``model_dir``, exporting it into ``cache_dir`` if missing.

    The export is written into a temporary directory and renamed into place, so a crash never leaves a
    half-written model behind; a per-key file lock makes concurrent first uses (threads or processes)
    wait for one export instead of racing.

    Args:
        model_dir: sentence-transformers directory with ``model.safetensors`` and the tokenizer files.
        cache_dir: where exports live (created if missing).

    Returns:
        Path of ``model.onnx`` inside ``cache_dir/all-MiniLM-L6-v2-int8-<key>/``.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = export_key(model_dir)
    final = cache_dir / f"all-MiniLM-L6-v2-int8-{key}"
    if (final / META_FILE).is_file():
        return final / MODEL_FILE
    with _file_lock(cache_dir / f".{key}.lock"):
        if (final / META_FILE).is_file():  # another process finished while we waited
            return final / MODEL_FILE
        for stale in cache_dir.glob(f".tmp-{key}-*"):  # left by a crashed exporter: we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        log.info("exporting the embedding model to int8 ONNX (once per machine, ~20 s) into %s…", cache_dir)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cache_dir))
        try:
            work.chmod(0o755)  # mkdtemp makes it owner-only; the cache may be shared by service users
            with _quiet_libraries():
                export_model(model_dir, work / MODEL_FILE)
            meta = {"key": key, "source_sha256": weights_sha256(model_dir), "recipe": RECIPE_VERSION}
            (work / META_FILE).write_text(json.dumps(meta))
            work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("…exported the embedding model in %.1f s", time.monotonic() - started)
    return final / MODEL_FILE


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is exporting the embedding model…")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _LibraryRecords(logging.Filter):
    """Drops the export libraries' own log records below ERROR (by the file that logged them)."""

    def __init__(self) -> None:
        super().__init__()
        self._dirs = tuple(f"{os.sep}{name}{os.sep}" for name in _EXPORT_LIBRARIES)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not any(d in record.pathname for d in self._dirs)


class _ToLastResort(logging.Handler):
    """Stands in for "no handler" (what ``logging.lastResort`` serves) while a filter needs a handler to sit on."""

    def emit(self, record: logging.LogRecord) -> None:
        last = logging.lastResort
        if last is not None and record.levelno >= last.level:
            last.handle(record)


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Keep onnxruntime's, onnx's, torch's and transformers' log lines and progress bars out of the output.

    Their loggers log to the root logger's handlers (onnxruntime's quantiser calls ``logging.info`` itself, which
    would also ``basicConfig`` a root logger without handlers): the filter sits on the root logger and its
    handlers for the duration of the export, so other code's records pass as before. Errors still show.
    """
    from transformers.utils import logging as transformers_logging

    hf_logging: Any = transformers_logging  # untyped
    quiet, root = _LibraryRecords(), logging.getLogger()
    stand_in = _ToLastResort() if not root.handlers else None
    if stand_in is not None:
        root.addHandler(stand_in)
    filtered = [root, *root.handlers]
    for target in filtered:
        target.addFilter(quiet)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights: 100%|████|"
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        for target in filtered:
            target.removeFilter(quiet)
        if stand_in is not None:
            root.removeHandler(stand_in)


def export_model(model_dir: Path, target: Path, *, int8: bool = True) -> None:
    """Export ``model_dir`` to one ONNX file: fp32 trace -> BERT fusions -> (optionally) int8 per-channel.

    Args:
        model_dir: sentence-transformers directory with ``model.safetensors``.
        target: the ONNX file to write (intermediate files go next to it and are removed).
        int8: quantise the weights (the fused fp32 model is kept for comparisons when False).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    raw, fused = target.with_suffix(".raw.onnx"), target.with_suffix(".fused.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow that is constant here
        _export_fp32(model_dir, raw)
    optimized = optimize_model(str(raw), model_type="bert", num_heads=_NUM_HEADS, hidden_size=_HIDDEN, opt_level=1)
    raw.unlink()
    if not int8:
        optimized.save_model_to_file(str(target))
        return
    optimized.save_model_to_file(str(fused))
    quantize_dynamic(
        str(fused),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=_fp32_nodes(fused),
        # fused ops (com.microsoft domain) defeat shape inference; every tensor here is float32
        extra_options={"DefaultTensorType": 1},
    )
    fused.unlink()


def _fp32_nodes(model_file: Path) -> list[str]:
    """MatMuls kept in fp32: the first layer's FFN down-projection, whose post-GELU input has the worst outliers.

    On this 2-core AVX (no AVX2) CPU an fp32 MatMul costs 2.7x an int8 one per multiply: keeping all six FFN
    down-projections fp32 (recipe 1) spent half of a query's 4 ms there. Measured on 300 SciFact queries against
    the fp32 model (mean / min cosine, ms per 21-token query): all six fp32 0.9966 / 0.991, 3.75-3.98 ms; none
    0.9936 / 0.980, 2.58-2.69 ms, SciFact test hybrid nDCG@10 0.7312; only layer 0's (the largest single share
    of the error) 0.9950 / 0.988, 2.90 ms, nDCG@10 0.7341 (recipe 1: 0.7333).
    """
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and _is_ffn_down(n.name, layer=0)]


def _is_ffn_down(node_name: str, *, layer: int) -> bool:
    return f"/layer.{layer}/output/dense/" in node_name


def _export_fp32(model_dir: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel

    # eager attention exports the plain MatMul/Softmax pattern that onnxruntime fuses into Attention
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    example = torch.ones(2, 8, dtype=torch.long)
    dynamic = {0: "batch", 1: "sequence"}
    with torch.inference_mode():
        torch.onnx.export(
            MeanPooled().eval(),
            (example, example),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


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
    return onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])

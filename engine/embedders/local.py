"""Embedding models on disk: a sentence-transformers model directory, or an ONNX export with its tokenizer.

The dimension is read from the model itself (the modules' configs of a sentence-transformers directory, the
output shape of an ONNX graph), so a knowledge base's collection is made to fit before the model is loaded; the
window (``max_tokens``) from its configs. Nothing is downloaded: ``trust_remote_code`` stays off and the hub is
offline (``engine._process_env``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from engine.embedders.onnx_int8 import length_batches
from engine.embedders.sentence_transformer import SentenceTransformerEmbedder

DEFAULT_MAX_TOKENS = 256
_POOLING_FLAGS = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def window_of(model_dir: Path) -> int:
    """The model's input window in its own tokens: sentence-transformers' ``max_seq_length``, else the tokenizer's
    ``model_max_length``, else the position embeddings (capped: some tokenizers say 10^30)."""
    for file, key in (
        ("sentence_bert_config.json", "max_seq_length"),
        ("tokenizer_config.json", "model_max_length"),
        ("config.json", "max_position_embeddings"),
    ):
        value = _read_json(model_dir / file).get(key)
        if isinstance(value, int) and 8 <= value <= 32_768:
            return value
    return DEFAULT_MAX_TOKENS


def st_dimension(model_dir: Path) -> int:
    """The sentence embedding dimension of a sentence-transformers directory, from its modules' configs.

    Raises:
        ValueError: Not a sentence-transformers directory, or no module says its dimension.
    """
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8")) if (
        model_dir / "modules.json").is_file() else None  # fmt: skip
    if not isinstance(modules, list):
        raise ValueError(f"{model_dir} is not a sentence-transformers model directory (no modules.json)")
    dim: int | None = None
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        config = _read_json(model_dir / str(module.get("path", "")) / "config.json")
        if kind == "Transformer":
            hidden = config.get("hidden_size") or _read_json(model_dir / "config.json").get("hidden_size")
            dim = int(hidden) if isinstance(hidden, int) else dim
        elif kind == "Pooling":
            width = config.get("embedding_dimension", config.get("word_embedding_dimension", dim))
            modes = config.get("pooling_mode")
            count = (
                len(modes) if isinstance(modes, list)
                else 1 if isinstance(modes, str)
                else sum(bool(config.get(f"pooling_mode_{m}_tokens")) for m in _POOLING_FLAGS) or 1
            )  # fmt: skip
            dim = int(width) * count if isinstance(width, int) else dim
        elif kind == "Dense":
            dim = int(config["out_features"]) if isinstance(config.get("out_features"), int) else dim
    if not dim:
        raise ValueError(f"cannot read the embedding dimension of {model_dir}")
    return dim


class LocalSentenceTransformerEmbedder(SentenceTransformerEmbedder):
    """Any sentence-transformers model directory on disk (torch, CPU); normalised embeddings."""

    def __init__(self, model_dir: Path, *, threads: int = 1, batch_size: int = 32) -> None:
        model_dir = Path(model_dir)
        super().__init__(threads=threads, batch_size=batch_size, model_path=model_dir)
        self.name = f"sentence-transformers:{model_dir.name}"
        self.dim = st_dimension(model_dir)
        self.max_tokens = window_of(model_dir)

    def _loaded(self) -> Any:
        model = super()._loaded()
        loaded = int(model.get_embedding_dimension())
        if loaded != self.dim:
            raise ValueError(f"{self._model_path} embeds {loaded} dimensions, its configs say {self.dim}")
        return model


def onnx_file_of(path: Path) -> Path:
    """``path`` itself (a ``.onnx`` file), or the ``model.onnx`` in it (or in its ``onnx/`` folder)."""
    if path.is_file():
        return path
    for candidate in (path / "model.onnx", path / "onnx" / "model.onnx"):
        if candidate.is_file():
            return candidate
    raise ValueError(f"no ONNX model at {path} (expected model.onnx)")


def onnx_output_shape(model_file: Path) -> tuple[int, int]:
    """(rank, last dimension) of the graph's first output: rank 2 is a sentence embedding, rank 3 token
    embeddings to mean-pool.

    Raises:
        ValueError: The output's last dimension is not fixed in the graph.
    """
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    dims = graph.output[0].type.tensor_type.shape.dim
    if len(dims) not in (2, 3) or dims[-1].dim_value <= 0:
        raise ValueError(f"{model_file}: the first output must be (batch, dim) or (batch, tokens, dim), dim fixed")
    return len(dims), int(dims[-1].dim_value)


class OnnxDirEmbedder:
    """An ONNX export on disk (``model.onnx`` + ``tokenizer.json``), run by onnxruntime on the CPU.

    Inputs ``input_ids``, ``attention_mask`` and, when the graph has it, ``token_type_ids``. A sentence-embedding
    output is used as it is; token embeddings (e.g. an optimum export's ``last_hidden_state``) are mean-pooled over
    the attention mask. Either way the vectors are L2-normalised. Queries and documents run on separate sessions,
    like the bundled int8 model, so a query never waits behind an ingest batch.
    """

    def __init__(self, path: Path, *, threads: int = 1, query_threads: int = 1, batch_size: int = 32,
                 max_batch_tokens: int = 8192) -> None:  # fmt: skip
        self._model_file = onnx_file_of(Path(path))
        folder = self._model_file.parent
        self._model_dir = folder if (folder / "tokenizer.json").is_file() else folder.parent
        if not (self._model_dir / "tokenizer.json").is_file():
            raise ValueError(f"no tokenizer.json next to {self._model_file}")
        self._rank, self.dim = onnx_output_shape(self._model_file)
        self.max_tokens = window_of(self._model_dir)
        self.name = f"onnx:{Path(path).name}"
        self._threads, self._query_threads = max(1, threads), max(1, query_threads)
        self._batch_size, self._max_batch_tokens = batch_size, max_batch_tokens
        self._sessions: tuple[Any, Any] | None = None  # (documents, queries)
        self._tokenizer: Any = None
        self._counter: Any = None
        self._load_lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        self._query_limiter = anyio.CapacityLimiter(1)

    def _loaded(self, *, query: bool = False) -> tuple[Any, Any]:
        with self._load_lock:
            if self._sessions is None:
                self._tokenizer = _tokenizer(self._model_dir, self.max_tokens)
                self._sessions = (_session(self._model_file, self._threads), _session(self._model_file,
                                                                                       self._query_threads))
            return self._sessions[1 if query else 0], self._tokenizer

    def warm_up(self) -> None:
        self.encode_sync(["warm up"])

    def token_count(self, text: str) -> int:
        with self._load_lock:
            if self._counter is None:
                self._counter = _tokenizer(self._model_dir, None)
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def encode_sync(self, texts: Sequence[str], *, query: bool = False) -> list[list[float]]:
        """Embed ``texts`` (blocking), in input order, batched by length."""
        if not texts:
            return []
        import numpy as np

        session, tokenizer = self._loaded(query=query)
        wanted = {i.name for i in session.get_inputs()}
        encodings = tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encodings]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for batch in length_batches(lengths, self._batch_size, self._max_batch_tokens):
            width = lengths[batch[0]]
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                ids[row, : lengths[index]] = encodings[index].ids
                mask[row, : lengths[index]] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            result = session.run(None, {k: v for k, v in feed.items() if k in wanted})[0]
            if self._rank == 3:  # token embeddings: mean over the real tokens
                weights = mask[..., None].astype(np.float32)
                result = (result * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
            norms = np.linalg.norm(result, axis=1, keepdims=True)
            out[batch] = result / np.clip(norms, 1e-12, None)
        vectors: list[list[float]] = out.tolist()
        return vectors

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await anyio.to_thread.run_sync(self.encode_sync, texts, limiter=self._limiter)

    async def embed_query(self, text: str) -> list[float]:
        vectors = await anyio.to_thread.run_sync(
            lambda: self.encode_sync([text], query=True), limiter=self._query_limiter
        )
        return vectors[0]


def _tokenizer(model_dir: Path, max_tokens: int | None) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    if max_tokens is None:
        tokenizer.no_truncation()  # counts must not stop at the window
    else:
        tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.no_padding()
    return tokenizer


def _session(model_file: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads must not spin
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])

"""Embedder adapters (dense MiniLM in two backends, models on disk, BM25 sparse) and the factories that pick them.

A spec names an embedder: ``minilm-onnx-int8`` (the bundled all-MiniLM-L6-v2 as int8 ONNX, default), ``minilm``
(the same in torch fp32), ``sentence-transformers:/model/dir`` or ``onnx:/model/dir`` (a model on disk; its
dimension is read from the model). ``RAGLINE_EMBEDDERS`` gives specs names (``name=spec``) that knowledge bases
may choose; ``RAGLINE_EMBEDDER`` picks the default by name or spec.
"""

from __future__ import annotations

import threading
from pathlib import Path

from engine.errors import InvalidInput
from engine.ports import Embedder, SparseEncoder
from engine.settings import Settings

BUILT_IN = ("minilm-onnx-int8", "minilm")


def create_embedder(settings: Settings, spec: str | None = None) -> Embedder:
    """Build an embedder from a spec (default: ``RAGLINE_EMBEDDER``, which may name one of ``RAGLINE_EMBEDDERS``).

    Raises:
        ValueError: An unknown spec, or a model directory that is not usable.
    """
    spec = named_specs(settings).get(spec or settings.embedder, spec or settings.embedder)
    if spec == "minilm":
        from engine.embedders.sentence_transformer import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(threads=settings.resolved_torch_threads)
    if spec == "minilm-onnx-int8":
        from engine.embedders.onnx_int8 import OnnxInt8Embedder

        return OnnxInt8Embedder(
            cache_dir=settings.model_cache_dir,
            threads=settings.resolved_torch_threads,
            query_threads=settings.resolved_query_threads,
        )
    kind, _, location = spec.partition(":")
    if kind in ("sentence-transformers", "onnx") and location:
        path = Path(location).expanduser()
        if not path.exists():
            raise ValueError(f"no model at {path} (embedder {spec!r})")
        from engine.embedders.local import LocalSentenceTransformerEmbedder, OnnxDirEmbedder

        if kind == "onnx":
            return OnnxDirEmbedder(
                path, threads=settings.resolved_torch_threads, query_threads=settings.resolved_query_threads
            )
        return LocalSentenceTransformerEmbedder(path, threads=settings.resolved_torch_threads)
    raise ValueError(
        f"unknown RAGLINE_EMBEDDER {spec!r} (use 'minilm-onnx-int8', 'minilm', 'sentence-transformers:/model/dir', "
        "'onnx:/model/dir' or a name from RAGLINE_EMBEDDERS)"
    )


def named_specs(settings: Settings) -> dict[str, str]:
    """``RAGLINE_EMBEDDERS`` as {name: spec}."""
    named: dict[str, str] = {}
    for item in settings.embedders:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise ValueError(f"RAGLINE_EMBEDDERS entries are name=spec, not {item!r}")
        named[name.strip()] = spec.strip()
    return named


class EmbedderCatalog:
    """The embedders knowledge bases may use, by name: the default, the bundled ones and ``RAGLINE_EMBEDDERS``.

    Each is built once, on first use, and shared (a model is loaded once however many knowledge bases use it).
    API users choose among these names; only the operator's configuration names model paths.
    """

    def __init__(self, settings: Settings, default: Embedder) -> None:
        self.settings = settings
        self.default_name = settings.embedder
        self._named = named_specs(settings)
        self._built: dict[str, Embedder] = {self.default_name: default}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(dict.fromkeys([self.default_name, *BUILT_IN, *self._named]))

    def get(self, name: str) -> Embedder:
        """The embedder called ``name`` (blocking the first time: it reads the model's configs).

        Raises:
            InvalidInput: No embedder by that name, or its model cannot be used.
        """
        if name not in self.names():
            raise InvalidInput(f"unknown embedder {name!r} (available: {', '.join(self.names())})")
        with self._lock:
            if name not in self._built:
                try:
                    self._built[name] = create_embedder(self.settings, name)
                except (ValueError, OSError) as exc:
                    raise InvalidInput(f"embedder {name!r} cannot be used: {exc}") from exc
            return self._built[name]


def create_sparse_encoder() -> SparseEncoder:
    """BM25 term-frequency vectors (Qdrant's built-in English BM25; IDF is applied by the store)."""
    from engine.embedders.bm25 import Bm25SparseEncoder

    return Bm25SparseEncoder()

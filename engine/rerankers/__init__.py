"""Reranker adapters (off by default) and the factory that picks one from settings.

``RAGLINE_RERANKER`` chooses one: ``cross-encoder:/path/to/model`` loads a sentence-transformers
CrossEncoder from a local directory (nothing is downloaded), ``package.module:factory`` calls a
factory of your own with the ``Settings`` and uses what it returns.
"""

from __future__ import annotations

import importlib

from engine.ports import Reranker
from engine.settings import Settings


def load_reranker(settings: Settings) -> Reranker | None:
    """The configured reranker, or ``None`` when reranking is off."""
    spec = settings.reranker.strip()
    if not spec:
        return None
    if spec.startswith("cross-encoder:"):
        from engine.rerankers.cross_encoder import CrossEncoderReranker

        return CrossEncoderReranker(spec.removeprefix("cross-encoder:"))
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError("RAGLINE_RERANKER must be 'cross-encoder:/model/path' or 'package.module:factory'")
    factory = getattr(importlib.import_module(module_name), attr)
    reranker: Reranker = factory(settings)
    return reranker

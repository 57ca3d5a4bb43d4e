"""Shared fixtures: one real embedding model per test session."""

from __future__ import annotations

import os

import pytest

import engine  # noqa: F401  (offline environment and thread limits before numpy/torch)

os.environ.setdefault("RAGLINE_TORCH_THREADS", "1")


@pytest.fixture(scope="session")
def embedder():
    """The real bundled all-MiniLM-L6-v2 (loaded once; 1 torch thread keeps CI's 2 cores responsive)."""
    from engine.embedders.sentence_transformer import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder(threads=1)
    model.warm_up()
    return model

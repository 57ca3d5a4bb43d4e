"""Shared fixtures: one real embedding model per test session."""

from __future__ import annotations

import os

import pytest

import engine  # noqa: F401  (offline environment and thread limits before numpy/torch)

os.environ.setdefault("RAGLINE_TORCH_THREADS", "1")


@pytest.fixture(scope="session")
def embedder():
    """The default embedder users get (bundled all-MiniLM-L6-v2 as int8 ONNX), loaded once per session.

    One thread keeps CI's 2 cores responsive; the ONNX export is made once per machine.
    """
    from engine.embedders import create_embedder
    from engine.settings import Settings

    model = create_embedder(Settings.from_env(torch_threads=1))
    model.warm_up()  # type: ignore[attr-defined]
    return model

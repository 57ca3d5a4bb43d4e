"""Fixtures for the vector store conformance suite: one small corpus (``corpus.py``), every adapter."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.ports import VectorStore
from engine.stores.edge import EdgeVectorStore
from engine.stores.qdrant_server import QdrantServerVectorStore
from engine.types import VectorPoint
from tests.conformance.corpus import DIM, build_corpus, publish_corpus


def _make_store(kind: str, tmp_path: Path, edge_template: Path) -> VectorStore:
    if kind == "edge":
        # Creating a shard fsyncs once per payload index (1-2 s on a busy 2-core box); a copy of a closed
        # empty shard opens in ~0.2 s. Creation itself is covered by edge_template and test_edge_store.
        shutil.copytree(edge_template, tmp_path / "shard")
        return EdgeVectorStore(tmp_path / "shard", DIM, idf_recheck_s=0)  # every write re-evaluated: guards tested
    return QdrantServerVectorStore(location=":memory:", collection="conformance", dim=DIM)


STORE_KINDS = ["edge", "qdrant-client-memory"]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def edge_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed, empty edge shard (with its payload indexes) to copy."""
    path = tmp_path_factory.mktemp("edge-template") / "shard"
    EdgeVectorStore(path, DIM).close_sync()
    return path


@pytest.fixture(scope="session")
def corpus() -> list[VectorPoint]:
    return build_corpus()


@pytest.fixture(scope="module", params=STORE_KINDS)
async def store(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    corpus: list[VectorPoint],
    edge_template: Path,
) -> AsyncIterator[VectorStore]:
    """A store holding the whole corpus, every file published; shared by a module's read-only tests."""
    shared = _make_store(request.param, tmp_path_factory.mktemp("shared-store"), edge_template)
    await publish_corpus(shared, corpus)
    yield shared
    await shared.close()


@pytest.fixture(params=STORE_KINDS)
async def empty_store(
    request: pytest.FixtureRequest, tmp_path: Path, edge_template: Path
) -> AsyncIterator[VectorStore]:
    """A new, empty store for one test."""
    fresh = _make_store(request.param, tmp_path, edge_template)
    yield fresh
    await fresh.close()


@pytest.fixture
async def fresh_store(empty_store: VectorStore, corpus: list[VectorPoint]) -> VectorStore:
    """A store of its own holding the published corpus, for tests that write."""
    await publish_corpus(empty_store, corpus)
    return empty_store

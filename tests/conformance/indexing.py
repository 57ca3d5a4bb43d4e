"""Files of synthetic points for the embedded store's background-index tests, and waiting for a build."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np

from engine.stores.edge import EdgeVectorStore
from engine.types import ChunkRecord, SearchFilters, VectorPoint, VectorQuery
from tests.conformance.corpus import DIM

WS = "ws-index"


def points(file_id: str, count: int, seed: int) -> list[VectorPoint]:
    rng = np.random.default_rng(seed)
    out = []
    for ordinal in range(count):
        vector = rng.normal(size=DIM)
        chunk = ChunkRecord(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"index-test/{file_id}/{ordinal}")), workspace_id=WS, kb_id="kb",
            file_id=file_id, file_name=f"{file_id}.md", file_type="md", ordinal=ordinal, text=f"chunk {ordinal}",
        )  # fmt: skip
        out.append(VectorPoint(chunk=chunk, dense=(vector / np.linalg.norm(vector)).tolist()))
    return out


async def upsert_pending(store: EdgeVectorStore, files: int, count: int) -> list[list[VectorPoint]]:
    """``files`` files of ``count`` points each, written but not published (their ingest still running)."""
    batches = [points(f"file-{n}", count, seed=n) for n in range(files)]
    for batch in batches:
        await store.upsert(batch)
    return batches


async def add_file(store: EdgeVectorStore, file_id: str, count: int, seed: int) -> list[VectorPoint]:
    batch = points(file_id, count, seed)
    await store.upsert(batch)
    await store.publish_files(WS, [file_id])
    return batch


def nearest(point: VectorPoint) -> VectorQuery:
    return VectorQuery(mode="dense", filters=SearchFilters(workspace_id=WS), limit=1, dense=point.dense)


async def wait_for_build(store: EdgeVectorStore) -> None:
    for _ in range(1200):  # generous: the child imports Python and qdrant-edge before it builds
        if not store.building_index:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the build did not finish in time")


async def next_build_started(store: EdgeVectorStore, first: object) -> bool:
    """Whether a build other than ``first`` starts within two minutes (polled often enough not to miss one: the
    child alone takes longer than a poll to start Python)."""
    for _ in range(2400):
        if store._build is not None and store._build is not first:
            return True
        await asyncio.sleep(0.05)
    return False

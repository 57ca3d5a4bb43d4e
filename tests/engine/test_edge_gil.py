"""The embedded store around qdrant-edge's GIL: reads in the caller's thread, big deletes in slices.

qdrant-edge holds the GIL for the whole of each call, so a worker thread gives a search no overlap with the event
loop (``EdgeVectorStore._read``), and a delete of a large knowledge base would stop every request for its whole
run (``EdgeVectorStore._delete_matching``). These tests pin what that means for a server: a search still answers
when every worker thread is taken, a search that arrives during a swap waits for it without stopping the event
loop, and a big delete is many small writes that together remove every point of the base and nothing else.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec
import pytest

from engine.stores.edge import EdgeVectorStore
from engine.types import SearchFilters
from tests.conformance.corpus import DIM
from tests.conformance.indexing import WS, add_file, nearest, points

pytestmark = pytest.mark.anyio


def held_exclusively(store: EdgeVectorStore, release: threading.Event, holding: threading.Event) -> None:
    with store._gate.exclusive():  # what an index swap holds while it replaces the shard
        holding.set()
        release.wait(30)


async def test_a_search_answers_while_every_worker_thread_is_taken(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path / "shard", DIM, index_threshold=None)
    try:
        stored = await add_file(store, "file-a", 20, seed=1)
        limiter = anyio.to_thread.current_default_thread_limiter()
        borrowers = [object() for _ in range(int(limiter.total_tokens))]
        for borrower in borrowers:
            await limiter.acquire_on_behalf_of(borrower)  # uploads, fsyncs, ... holding every worker thread
        try:
            with anyio.fail_after(10):
                hits = await store.search(nearest(stored[3]))
                counted = await store.count(SearchFilters(workspace_id=WS))
        finally:
            for borrower in borrowers:
                limiter.release_on_behalf_of(borrower)
        assert hits[0].chunk.id == stored[3].chunk.id
        assert counted == 20
    finally:
        await store.close()


async def test_a_search_during_a_swap_waits_off_the_event_loop(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path / "shard", DIM, index_threshold=None)
    try:
        stored = await add_file(store, "file-a", 20, seed=2)
        release, holding = threading.Event(), threading.Event()
        swap = threading.Thread(target=held_exclusively, args=(store, release, holding), daemon=True)
        swap.start()
        await anyio.to_thread.run_sync(holding.wait, 30)
        ticks: list[float] = []
        answered: list[str] = []

        async def search() -> None:
            answered.append((await store.search(nearest(stored[5])))[0].chunk.id)

        async def tick() -> None:
            for _ in range(10):
                await anyio.sleep(0.02)
                ticks.append(time.monotonic())

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(search)
                await tick()  # the event loop runs on while the search waits for the gate
                assert not answered, "a search must not read the shard while a swap holds the gate"
                release.set()
        swap.join(10)
        assert len(ticks) == 10
        assert answered == [stored[5].chunk.id]
    finally:
        release.set()
        await store.close()


async def test_a_big_delete_goes_in_slices_and_removes_the_base_and_nothing_else(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path / "shard", DIM, index_threshold=None, delete_slice=40)
    try:
        for n in range(3):
            await add_file(store, f"big-{n}", 70, seed=n)  # knowledge base "kb": 210 points
        kept = [msgspec.structs.replace(p, chunk=msgspec.structs.replace(p.chunk, kb_id="other", id=str(uuid.uuid4())))
                for p in points("kept", 30, seed=9)]  # fmt: skip
        await store.upsert(kept)
        await store.publish_files(WS, ["kept"])
        writes = store._writes
        await store.delete_kb(WS, "kb")
        assert (store._writes - writes) // 2 == 6, "210 points in slices of 40: six delete writes"
        assert await store.count(SearchFilters(workspace_id=WS)) == 30
        assert await store.count(SearchFilters(workspace_id=WS, kb_ids=("kb",))) == 0
        assert await store.file_ids() == {"kept"}
        assert (await store.search(nearest(kept[4])))[0].chunk.id == kept[4].chunk.id
    finally:
        await store.close()

"""The embedded store builds its HNSW index in a child process and swaps it in without losing a write."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from engine.stores import edge_index
from engine.stores.edge import EdgeVectorStore
from engine.types import SearchFilters, VectorQuery
from tests.conformance.corpus import DIM
from tests.conformance.indexing import WS, add_file, nearest, next_build_started, upsert_pending, wait_for_build

pytestmark = pytest.mark.anyio


async def test_background_build_swaps_in_hnsw_and_keeps_later_writes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(edge_index, "CHECK_INTERVAL_S", 0.0)
    store = EdgeVectorStore(tmp_path / "shard", DIM, index_threshold=150)
    try:
        first = []
        for n in range(4):
            first += await add_file(store, f"file-{n}", 50, seed=n)  # the upsert past 150 points starts a build
        assert store._build is not None, "a build should have started once 150 dense vectors were unindexed"
        assert (await store.search(nearest(first[7])))[0].chunk.id == first[7].chunk.id  # searches go on
        during = await add_file(store, "written-during-build", 20, seed=99)
        await wait_for_build(store)
        assert await store.count(SearchFilters(workspace_id=WS)) == 220
        for point in (first[0], first[123], during[5]):
            assert (await store.search(nearest(point)))[0].chunk.id == point.chunk.id
        assert not edge_index.build_dir(store.path).exists() and not edge_index.old_dir(store.path).exists()
    finally:
        await store.close()
    reopened = EdgeVectorStore(tmp_path / "shard", DIM, index_threshold=None)
    try:
        assert await reopened.count(SearchFilters(workspace_id=WS)) == 220
    finally:
        await reopened.close()


async def test_a_swap_cut_short_by_a_crash_is_undone_on_open(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    store = EdgeVectorStore(path, DIM, index_threshold=None)
    await add_file(store, "kept", 30, seed=1)
    await store.close()
    # the crash came after the live shard moved aside and before the build was complete in its place
    path.rename(edge_index.old_dir(path))
    path.mkdir()
    (path / "half-written").write_text("")
    edge_index.swap_marker(path).touch()
    edge_index.build_dir(path).mkdir()

    recovered = EdgeVectorStore(path, DIM, index_threshold=None)
    try:
        assert await recovered.count(SearchFilters(workspace_id=WS)) == 30
        leftovers = (edge_index.swap_marker(path), edge_index.old_dir(path), edge_index.build_dir(path))
        assert not any(p.exists() for p in leftovers)
    finally:
        await recovered.close()


async def test_a_build_whose_child_dies_is_tried_again_and_then_swapped_in(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(edge_index, "CHECK_INTERVAL_S", 0.0)
    monkeypatch.setattr(edge_index, "RETRY_AFTER_S", 0.2)
    store = EdgeVectorStore(tmp_path / "shard", DIM, index_threshold=150)
    try:
        written = []
        for n in range(4):
            written += await add_file(store, f"file-{n}", 50, seed=n)
        first = store._build
        assert first is not None, "a build should have started once 150 dense vectors were unindexed"
        first.kill()  # what a SIGKILL from outside (the OOM killer, an operator) does to the child
        # no write comes: only the retry can build the index
        assert await next_build_started(store, first), "the failed build was not tried again"
        await wait_for_build(store)  # the retried build
        assert store._failed_builds == 0  # 1 after the kill; back to 0 only once a build has been swapped in
        assert not edge_index.build_dir(store.path).exists()
        assert await store.count(SearchFilters(workspace_id=WS)) == len(written)
        assert (await store.search(nearest(written[42])))[0].chunk.id == written[42].chunk.id
    finally:
        await store.close()


async def test_relabelled_chunks_count_towards_the_next_build(tmp_path: Path, monkeypatch) -> None:
    # A payload update moves points out of their HNSW segment (copy on write): relabelling files without uploading
    # anything must still lead to a build, or dense search stays on an exact scan over them.
    monkeypatch.setattr(edge_index, "CHECK_INTERVAL_S", 0.0)
    store = EdgeVectorStore(tmp_path / "shard", DIM, index_threshold=150)
    try:
        files = [await add_file(store, f"file-{n}", 50, seed=n) for n in range(3)]  # the third starts a build
        assert store.building_index
        await wait_for_build(store)
        assert not store.building_index
        await store.relabel_file(WS, "file-0", tags=["reviewed"], metadata={})
        assert not store.building_index  # 50 moved points: below the threshold
        await store.relabel_file(WS, "file-1", tags=["reviewed"], metadata={})
        await store.relabel_file(WS, "file-2", tags=["reviewed"], metadata={})
        assert store.building_index
        await wait_for_build(store)
        reviewed = SearchFilters(workspace_id=WS, tags=("reviewed",))
        assert await store.count(reviewed) == 150
        point = files[1][9]
        hits = await store.search(VectorQuery(mode="dense", filters=reviewed, limit=1, dense=point.dense))
        assert hits[0].chunk.id == point.chunk.id and hits[0].chunk.tags == ("reviewed",)
    finally:
        await store.close()


async def test_chunks_a_build_indexed_before_their_publish_count_towards_the_next_build(
    tmp_path: Path, monkeypatch
) -> None:
    # A build copies the points of files still being ingested and indexes them; their publish, a payload update,
    # moves them out of the index again (copy on write): it must lead to the next build as new points do.
    monkeypatch.setattr(edge_index, "CHECK_INTERVAL_S", 0.0)
    store = EdgeVectorStore(tmp_path / "shard", DIM, index_threshold=150)
    try:
        files = await upsert_pending(store, files=3, count=50)  # the third upsert starts a build
        assert store.building_index
        await wait_for_build(store)
        assert not store.building_index
        await store.publish_files(WS, ["file-0", "file-1"])
        assert not store.building_index  # 100 points moved out: below the threshold
        await store.publish_files(WS, ["file-2"])
        assert store.building_index
        await wait_for_build(store)
        point = files[1][7]
        assert (await store.search(nearest(point)))[0].chunk.id == point.chunk.id
    finally:
        await store.close()


async def test_chunks_published_while_a_build_runs_count_towards_the_next_one(tmp_path: Path, monkeypatch) -> None:
    # The same publish during the build: the swap replays it on the built copy, which moves the points out there.
    monkeypatch.setattr(edge_index, "CHECK_INTERVAL_S", 0.0)
    store = EdgeVectorStore(tmp_path / "shard", DIM, index_threshold=150)
    try:
        files = await upsert_pending(store, files=3, count=50)
        first = store._build
        assert first is not None
        # the child is still starting Python when this lands; should it come after the swap instead, the case
        # above applies and the outcome is the same: a second build over these points
        await store.publish_files(WS, ["file-0", "file-1", "file-2"])
        assert await next_build_started(store, first), "the published points led to no build"
        await wait_for_build(store)
        point = files[2][11]
        assert (await store.search(nearest(point)))[0].chunk.id == point.chunk.id
    finally:
        await store.close()


@pytest.mark.parametrize("damage", ["emptied", "segments lost"])
async def test_a_build_copy_that_cannot_be_used_keeps_the_shard_and_is_built_again(
    tmp_path: Path, monkeypatch, damage: str
) -> None:
    # The child exited 0 but its copy is not what it copied (a disk error, a cleanup that ran over it): the swap
    # must keep the live shard with every point, not open whatever the directory holds, and build again later.
    monkeypatch.setattr(edge_index, "CHECK_INTERVAL_S", 0.0)
    monkeypatch.setattr(edge_index, "RETRY_AFTER_S", 0.2)
    store = EdgeVectorStore(tmp_path / "shard", DIM, index_threshold=150)
    try:
        written = []
        for n in range(4):
            written += await add_file(store, f"file-{n}", 50, seed=n)
        first = store._build
        assert first is not None
        await asyncio.to_thread(damage_before_the_swap, store, first, damage)
        while store._build is first:  # noqa: ASYNC110 - the swap runs, finds the copy unusable, keeps the shard
            await asyncio.sleep(0.05)
        assert await store.count(SearchFilters(workspace_id=WS)) == len(written)
        assert store._failed_builds == 1
        assert await next_build_started(store, first), "the build was not tried again"
        await wait_for_build(store)
        assert store._failed_builds == 0
        assert await store.count(SearchFilters(workspace_id=WS)) == len(written)
        assert (await store.search(nearest(written[42])))[0].chunk.id == written[42].chunk.id
    finally:
        await store.close()


def damage_before_the_swap(store: EdgeVectorStore, build: edge_index.BuildProcess, damage: str) -> None:
    """Hold the write lock the swap waits for until the child has exited, then damage its copy."""
    with store._write_lock:
        while build._process.poll() is None:
            time.sleep(0.05)
        assert build._process.returncode == 0
        if damage == "emptied":
            shutil.rmtree(build.directory)
            build.directory.mkdir()
        else:
            shutil.rmtree(build.directory / "segments")


async def test_a_build_that_cannot_start_fails_no_write_and_is_tried_again(tmp_path: Path, monkeypatch) -> None:
    # The copy for a build cannot be made (here a file stands where it goes; in life a full disk): the write that
    # crossed the threshold has happened and must say so, and the build comes later.
    monkeypatch.setattr(edge_index, "CHECK_INTERVAL_S", 0.0)
    monkeypatch.setattr(edge_index, "RETRY_AFTER_S", 0.2)
    store = EdgeVectorStore(tmp_path / "shard", DIM, index_threshold=150)
    blocker = edge_index.build_dir(store.path)
    blocker.write_text("not a directory")
    try:
        written = []
        for n in range(4):
            written += await add_file(store, f"file-{n}", 50, seed=n)
        assert not store.building_index
        assert await store.count(SearchFilters(workspace_id=WS)) == len(written)
        blocker.unlink()
        assert await next_build_started(store, None), "the build was not tried again"
        await wait_for_build(store)
        assert (await store.search(nearest(written[42])))[0].chunk.id == written[42].chunk.id
    finally:
        await store.close()

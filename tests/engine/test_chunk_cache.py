"""The embedded store's cache of returned chunks: one write count at a time, bounded by the text it holds."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from engine.settings import Settings
from engine.stores import create_vector_store
from engine.stores.edge_chunks import ChunkCache, footprint
from engine.types import ChunkRecord


def chunk(ordinal: int, text: str = "x" * 100) -> ChunkRecord:
    return ChunkRecord(
        id=f"c{ordinal}", workspace_id="ws", kb_id="kb", file_id="f", file_name="f.md", file_type="md",
        ordinal=ordinal, text=text,
    )  # fmt: skip


def test_chunks_kept_at_one_write_count_are_served_at_that_count_only() -> None:
    cache = ChunkCache()
    cache.put([(1, chunk(1)), (2, chunk(2))], writes=4)
    assert cache.get([1, 3, 2], writes=4) == [chunk(1), None, chunk(2)]
    assert cache.get([1, 2], writes=2) == [None, None]  # a search that started before the last write
    assert cache.get([1], writes=4) == [chunk(1)]  # ... does not empty it
    assert cache.get([1, 2], writes=5) == [None, None]  # a write is being applied: everything goes
    assert len(cache) == 0
    cache.put([(1, chunk(1))], writes=5)  # read while a write ran: not kept
    assert cache.get([1], writes=6) == [None] and len(cache) == 0


def test_a_read_that_started_before_the_last_write_is_not_kept() -> None:
    cache = ChunkCache()
    cache.put([(1, chunk(1))], writes=6)
    cache.put([(2, chunk(2))], writes=4)
    assert cache.get([1, 2], writes=6) == [chunk(1), None]


def test_past_its_budget_the_cache_drops_what_it_read_longest_ago() -> None:
    cache = ChunkCache(max_chars=3 * footprint(chunk(0)))
    cache.put([(n, chunk(n)) for n in range(3)], writes=0)
    cache.get([0], writes=0)
    cache.put([(3, chunk(3)), (1, chunk(1))], writes=0)  # 1 is there already: neither added nor counted twice
    assert cache.get([0, 1, 2, 3], writes=0) == [None, chunk(1), chunk(2), chunk(3)]
    assert cache.chars == 3 * footprint(chunk(0))
    cache.put([(4, chunk(4, "y" * 1000))], writes=0)  # larger than the whole budget: nothing stays
    assert len(cache) == 0 and cache.chars == 0
    cache.put([(5, chunk(5))], writes=0)
    assert cache.get([5], writes=0) == [chunk(5)]


def test_metadata_counts_against_the_budget_like_text() -> None:
    plain = chunk(0)
    labelled = msgspec.structs.replace(plain, metadata={"regions": ["x" * 256] * 32}, tags=("t" * 50,))
    assert footprint(labelled) == footprint(plain) + len("regions") + 256 * 32 + 50
    cache = ChunkCache(max_chars=footprint(labelled) + footprint(plain) - 1)
    cache.put([(0, plain), (1, labelled)], writes=0)
    assert cache.get([0, 1], writes=0) == [None, labelled]


def test_a_zero_budget_keeps_nothing() -> None:
    cache = ChunkCache(max_chars=0)
    cache.put([(0, chunk(0))], writes=0)
    assert cache.get([0], writes=0) == [None] and len(cache) == 0


def test_the_budget_comes_from_the_settings_and_must_not_be_negative(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RAGLINE_SEARCH_CACHE_MB"):
        create_vector_store(Settings.from_env({"RAGLINE_SEARCH_CACHE_MB": "-1"}, data_dir=tmp_path), dim=4)
    assert Settings.from_env({}).search_cache_mb == 32
    assert Settings.from_env({"RAGLINE_SEARCH_CACHE_MB": "0"}).search_cache_mb == 0

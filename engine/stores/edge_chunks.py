"""Chunks that searches returned, kept decoded in memory until the shard's next write.

Why: a search ranks without payloads and then reads the returned chunks' payloads from the shard: for a
BM25 search of SciFact (11k chunks, 100 files returned) 0.6 ms to read them and 0.35 ms to decode them, 40 % of
the search. Searches keep returning the same chunks (the popular documents of a knowledge base, a chat's
follow-up questions, an evaluation's or a benchmark's fixed query set); kept, they cost a dict lookup.

Every write to the shard (upsert, publish, relabel, delete) empties the cache, so an entry is always the shard's
current payload, and a deleted chunk's text is gone from memory with it. The store's write counter, kept like a
seqlock, tells whether a write overlapped the read that would fill it (then nothing is kept). Bounded by the
characters it holds (``RAGLINE_SEARCH_CACHE_MB``, counted over text, headings, tags, metadata and ids); past it,
the entries read longest ago go first. The bound should hold every chunk a knowledge base's searches keep
returning: entries dropped in read order under a cyclic query set larger than the cache are all misses (a
10 M-character cache, smaller than SciFact's returned chunks in three modes, cut BM25 hits from most to few).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from engine.types import ChunkRecord

# Characters counted per MB of memory: SciFact's chunks (~730 characters of text) count ~1,000 each and take
# ~1.9 KB all told (measured on a full cache: 9,859 chunks, 19.2 MB for 10 M characters).
CHARS_PER_MB = 500_000
MAX_CHARS = 32 * CHARS_PER_MB  # the default RAGLINE_SEARCH_CACHE_MB
# the ids, names and numbers every record carries (four 36-character ids and a file name)
_RECORD_CHARS = 200


def footprint(chunk: ChunkRecord) -> int:
    """Characters a cached chunk holds: its text, and the metadata, tags and headings that can be large too
    (metadata allows 32 keys of 32 strings of 256 characters: a file's chunks each carry their own copy)."""
    size = _RECORD_CHARS + len(chunk.text) + sum(map(len, chunk.heading_path)) + sum(map(len, chunk.tags))
    for key, value in chunk.metadata.items():
        size += len(key) + (sum(map(len, value)) if isinstance(value, list) else len(str(value)))
    return size


class ChunkCache:
    """Decoded chunks by point key (``edge_files.point_key``), valid for one write count of the shard.

    Searches run in several worker threads at once: one lock guards the entries (microseconds per search).
    """

    def __init__(self, max_chars: int = MAX_CHARS) -> None:
        self.max_chars = max_chars
        self._lock = threading.Lock()
        self._writes = 0
        self._chunks: dict[int | str, tuple[ChunkRecord, int]] = {}  # key -> (chunk, its footprint)
        self.chars = 0

    def get(self, keys: Sequence[int | str], writes: int) -> list[ChunkRecord | None]:
        """The cached chunk for each key (``None`` where not cached), as of the shard's write count ``writes``."""
        with self._lock:
            if not self._current(writes):
                return [None] * len(keys)
            chunks = self._chunks
            return [entry[0] if (entry := chunks.get(key)) is not None else None for key in keys]

    def put(self, entries: Iterable[tuple[int | str, ChunkRecord]], writes: int) -> None:
        """Keep chunks read from the shard while its write count stayed ``writes``."""
        if self.max_chars <= 0:
            return
        with self._lock:
            if not self._current(writes):
                return
            chunks = self._chunks
            for key, chunk in entries:
                if key not in chunks:
                    size = footprint(chunk)
                    chunks[key] = (chunk, size)
                    self.chars += size
            while self.chars > self.max_chars and chunks:
                oldest = next(iter(chunks))  # dicts keep insertion order: the entry read longest ago
                self.chars -= chunks.pop(oldest)[1]

    def __len__(self) -> int:
        return len(self._chunks)

    def _current(self, writes: int) -> bool:
        """Whether entries for write count ``writes`` may be used; a later count than the entries' empties them.

        An odd count (a write being applied) or an earlier one (a search that started before the last write)
        neither reads nor fills the cache.
        """
        if writes > self._writes:
            self._chunks = {}
            self.chars = 0
            self._writes = writes
        return writes == self._writes and writes % 2 == 0

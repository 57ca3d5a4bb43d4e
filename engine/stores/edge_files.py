"""Which file each point of the embedded shard belongs to, kept in memory for grouped searches.

Why: a search grouped by file ranks ~400 candidates to return ~100 files, and reading a payload costs ~10x its
score (3.7 ms for 400 file ids against 1.5 ms for the scores). With the map, the ranking is read without payloads
and only the returned chunks' payloads are fetched.

Entries never go stale: a point id always names the same file's chunk (ids are uuid5(file, ordinal) and every
upsert goes through the store, which records its own points), and a deleted point simply stops coming back from
queries. The map is loaded once per process, on the first grouped search (~5 us a point); past ``max_entries``
it starts over and learns the points that queries return.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import qdrant_edge as qe

from engine.types import VectorPoint

FILE_ID_ONLY = qe.PayloadSelector.Include(["file_id"])
# ~90 bytes an entry: 500k point ids cost ~45 MB.
MAX_ENTRIES = 500_000


def point_key(point_id: object) -> int | str:
    """A point id as the map keys it: the UUID's integer (cheap to hash), else the id as given."""
    if isinstance(point_id, UUID):
        return point_id.int
    try:
        return UUID(str(point_id)).int
    except ValueError:
        return str(point_id)


class FileMap:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.loaded = False
        self._files: dict[int | str, str] = {}

    def learn_points(self, points: Sequence[VectorPoint]) -> None:
        """After an upsert: the points' files."""
        self._make_room(len(points))
        for point in points:
            self._files[point_key(point.chunk.id)] = point.chunk.file_id

    def learn_records(self, records: Sequence[qe.Record]) -> None:
        self._make_room(len(records))
        for record in records:
            file_id = (record.payload or {}).get("file_id")
            if isinstance(file_id, str):
                self._files[point_key(record.id)] = file_id

    def load(self, shard: qe.EdgeShard) -> None:
        """Learn every point's file (once; not when the shard has more points than the map holds)."""
        self.loaded = True
        if shard.info().points_count > self.max_entries:
            return
        offset: Any = None
        # Pages of 1,000: each scroll holds the GIL, and every request waits meanwhile. SciFact's 11.4k points took
        # 109-113 ms either way; the longest call 96-100 ms with pages of 10,000 and 10 ms with pages of 1,000.
        while True:
            records, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=1_000, with_payload=FILE_ID_ONLY))
            self.learn_records(records)
            if offset is None:
                return

    def first_per_file(
        self, shard: qe.EdgeShard, hits: Sequence[qe.ScoredPoint], limit: int
    ) -> list[tuple[qe.ScoredPoint, Any, int | str]]:
        """Each file's best hit, best first, up to ``limit`` files: (hit, point id, map key).

        Stops at ``limit`` files: reading a point id costs ~1 us (a UUID object is built per access). Points the
        map does not know (a map past its size) are learnt from the shard in one call.
        """
        files, seen, best, learnt = self._files, set(), [], False
        for index, hit in enumerate(hits):
            point_id = hit.id
            key = point_key(point_id)
            file_id = files.get(key)
            if file_id is None and not learnt:
                self.learn_records(shard.retrieve(_ids(hits[index:]), FILE_ID_ONLY, False))
                file_id, learnt = files.get(key), True  # still None: deleted since the query
            if file_id is None or file_id in seen:
                continue
            seen.add(file_id)
            best.append((hit, point_id, key))
            if len(best) >= limit:
                break
        return best

    def _make_room(self, adding: int) -> None:
        if len(self._files) + adding > self.max_entries:
            self._files.clear()


def _ids(hits: Iterable[qe.ScoredPoint]) -> list[Any]:
    return [hit.id for hit in hits]

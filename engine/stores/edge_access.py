"""Where ``EdgeVectorStore``'s shard calls run, given that qdrant-edge 0.9.0 holds the GIL for each of them.

A worker thread gives a call no overlap with the event loop (a thread ticking every 0.5 ms stood still during a
15 ms query; ``benchmarks/edge_gil.py`` checks the installed version), only two thread hops. So short reads run in
the calling thread unless an index swap holds the gate; writes run in a worker thread under one lock and bump a
seqlock-style counter; deletes go in slices so that no single call stops the server for long.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
import qdrant_edge as qe

from engine.errors import EngineError
from engine.stores._common import Condition
from engine.stores.edge_index import ReadGate
from engine.stores.edge_requests import edge_filter, translate_errors

T = TypeVar("T")

DELETE_SLICE = 500  # points per delete write (see ``ShardAccess._delete_matching``)


class ShardAccess:
    """Reads, writes and sliced deletes of ``EdgeVectorStore`` (its state lives on the store, which mixes this in)."""

    _shard: qe.EdgeShard
    _gate: ReadGate
    _write_lock: threading.Lock
    _closed: bool
    _writes: int  # odd while a write is being applied, bumped again when it is done
    _replay: list[qe.UpdateOperation] | None
    delete_slice: int

    async def _read(self, call: Callable[..., T], *args: Any, inline: bool = True) -> T:
        """Run ``call`` (it must look ``self._shard`` up when it runs: a swap replaces it) in the calling thread when
        ``inline`` and no swap holds the gate; reads that wait for a swap, or may run long, use a worker thread."""
        self._require_open()
        if inline:
            with self._gate.read_now() as entered:
                if entered:
                    self._require_open()
                    return translate_errors(call, *args)
        return await anyio.to_thread.run_sync(self._read_sync, call, *args)

    def _read_sync(self, call: Callable[..., T], *args: Any) -> T:
        with self._gate.read():
            self._require_open()
            return translate_errors(call, *args)

    async def _write(self, operation: Callable[[], qe.UpdateOperation], then: Callable[[], int] | None = None) -> int:
        """Apply one update; ``then`` runs right after it under the write lock (its result is returned, else 0)."""
        self._require_open()
        return await anyio.to_thread.run_sync(self._write_sync, operation, then)

    def _write_sync(self, operation: Callable[[], qe.UpdateOperation], then: Callable[[], int] | None = None) -> int:
        update = translate_errors(operation)
        with self._write_lock:
            self._require_open()
            self._writes += 1
            try:
                translate_errors(self._shard.update, update)
                if self._replay is not None:
                    self._replay.append(update)  # the build copy predates it: applied again after the swap
            finally:
                self._writes += 1
            return then() if then is not None else 0

    async def _delete_matching(self, conditions: list[Condition]) -> None:
        """Delete the points matching ``conditions``, ``delete_slice`` at a time, each slice its own write: a delete
        holds the GIL throughout (~25 us a point, 0.2 s for 8,000), by slices of 500 at most 15 ms. A crash between
        slices leaves points whose file rows are gone; the start-up sweep purges them (``purge_files``)."""
        flt = edge_filter(conditions)
        request = qe.ScrollRequest(limit=self.delete_slice, filter=flt, with_payload=False, with_vector=False)
        while True:
            records, _ = await self._read(lambda: self._shard.scroll(request))
            if records:
                await self._write(functools.partial(qe.UpdateOperation.delete_points, [r.id for r in records]))
            if len(records) < self.delete_slice:  # as a single delete, points written after it are not its business
                return

    def _require_open(self) -> None:
        if self._closed:
            raise EngineError("vector store is closed", code="store_closed")

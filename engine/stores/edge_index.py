"""HNSW for the embedded shard, built in a child process while the server keeps serving.

Why a child: ``EdgeShard.optimize()`` holds the GIL for its whole run (~5 min at 100k chunks on 2 cores), so in the
server process it would stop every request. A shard can only be open in one process, so the child builds on a
copy: the store flushes and copies its directory (writes wait for the copy, reads do not), the child loads the
copy, optimises it and exits, and the store swaps the built copy in, replaying the writes that came after the
copy. Searches wait for the swap only (~0.3 s at 100k: close, load, replay).

A crash mid-swap is undone on the next start (``recover_swap``): the marker file says a swap began, the old
shard is put back, and the build runs again later. A build whose child fails (killed, crashed) is tried again after
a delay that doubles with each failure in a row, whether or not anything is written meanwhile; so is a build whose
copy does not load as a shard or holds fewer points than were copied into it (the live shard stays as it was).

Run as ``python -m engine.stores.edge_index DIR`` (the child): optimise the shard in DIR and exit 0.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import qdrant_edge as qe

from engine.errors import EngineError
from engine.stores.edge_requests import pending_files, point_count

log = logging.getLogger("ragline")

# Dense vectors outside HNSW before a build starts. At 11k SciFact chunks a graph search for 200 candidates takes
# half the time of an exact scan (dense 0.41 vs 0.86 ms, hybrid 0.70 vs 1.43 ms) at the same nDCG@10, and the build
# takes ~2 s; at 100k the scan is 12 ms against ~1 ms. Qdrant's own default starts at ~6.5k such vectors (10 MB).
INDEX_THRESHOLD = 10_000
CHECK_INTERVAL_S = 30.0
# A failed build (the child killed or crashed) is tried again after this delay, doubled per failure in a row up to
# MAX_RETRY_AFTER_S: without it a store nobody writes to again would scan every dense vector until it restarts.
RETRY_AFTER_S = 60.0
MAX_RETRY_AFTER_S = 3600.0


def build_dir(path: Path) -> Path:
    return path.with_name(path.name + ".build")


def old_dir(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def swap_marker(path: Path) -> Path:
    return path.with_name(path.name + ".swapping")


def recover_swap(path: Path) -> None:
    """Undo a swap a crash interrupted (the old shard comes back) and drop a leftover build copy."""
    marker, old = swap_marker(path), old_dir(path)
    if marker.exists():
        if old.exists():
            if path.exists():
                shutil.rmtree(path)
            old.rename(path)
        marker.unlink()
    for leftover in (old, build_dir(path)):
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)


class ReadGate:
    """Many readers, or one swapper: a swap waits for the searches in flight and holds new ones back."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._swapping = False

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            self._leave()

    @contextlib.contextmanager
    def read_now(self) -> Iterator[bool]:
        """Enter as a reader only if no swap holds or waits for the gate; yields whether it entered."""
        with self._cond:
            entered = not self._swapping
            if entered:
                self._readers += 1
        try:
            yield entered
        finally:
            if entered:
                self._leave()

    def _leave(self) -> None:
        """A reader is done; the last one lets a waiting swap in."""
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._swapping = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._swapping = False
                self._cond.notify_all()


class BuildProcess:
    """One child optimising ``directory``; ``wait`` blocks until it exits."""

    def __init__(self, directory: Path, points: int, copied: int, pending: dict[str, int] | None = None) -> None:
        self.directory = directory
        self.points = points  # dense vectors it indexes that were outside HNSW
        self.copied = copied  # points in the copy: the built copy must hold as many to be swapped in
        # by file, the points it indexes before their file is published (see BackgroundIndexing._published)
        self.pending = pending or {}
        self.started = time.monotonic()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "engine.stores.edge_index", str(directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait(self) -> bool:
        _, stderr = self._process.communicate()
        if self._process.returncode != 0:
            log.warning("HNSW build failed (exit %s): %s", self._process.returncode, stderr.decode()[-500:])
        return self._process.returncode == 0

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()


def unindexed_at_open(shard: qe.EdgeShard) -> int:
    """Dense vectors outside HNSW, estimated from the counts (every point's sparse vector is always indexed)."""
    info = shard.info()
    return max(0, info.points_count - max(0, info.indexed_vectors_count - info.points_count))


def index_offset(shard: qe.EdgeShard) -> int:
    """Indexed vectors minus points right after a (re)open or an optimisation, when no deleted point is counted:
    the dense vectors in HNSW segments (every point's sparse vector is always indexed)."""
    info = shard.info()
    return int(info.indexed_vectors_count - info.points_count)


class BackgroundIndexing:
    """The background build of ``EdgeVectorStore`` (its state lives on the store, which mixes this in)."""

    path: Path
    dim: int
    index_threshold: int | None
    _write_lock: threading.Lock
    _gate: ReadGate
    _closed: bool
    _shard: qe.EdgeShard
    _build: BuildProcess | None
    _replay: list[qe.UpdateOperation] | None
    _next_index_check: float
    _writes: int
    _index_offset: int
    _unindexed: int  # dense vectors written since the last build (or, at open, outside HNSW as far as info tells)
    _pending_indexed: dict[str, int]  # by file: points a swapped-in build indexed before their file was published
    _published_during_build: set[str]  # files published since the running build's copy
    _failed_builds: int  # failed builds in a row: the retry waits longer each time

    def _reopen(self) -> qe.EdgeShard:
        raise NotImplementedError

    @property
    def building_index(self) -> bool:
        """Whether a background HNSW build is running (benchmarks wait for it before they time searches)."""
        return self._build is not None

    def _maybe_index(self) -> None:
        """After a write, at most every ``CHECK_INTERVAL_S``: start a build when enough dense vectors are unindexed."""
        if self.index_threshold is None or self._build is not None or self._unindexed < self.index_threshold:
            return
        if time.monotonic() < self._next_index_check:
            return
        self._next_index_check = time.monotonic() + CHECK_INTERVAL_S
        with self._write_lock:  # writes wait for the copy (~1 s at 100k); searches do not
            if not self._closed and self._build is None:
                self._start_build()

    def _published(self, file_ids: Sequence[str]) -> int:
        """After publishing ``file_ids`` (under the write lock): how many of their points the publish moved out of
        HNSW. A build copies the points of files still being ingested and indexes them; the publish is a payload
        update, which moves a point out of its HNSW segment (copy on write), whether it comes during the build
        (the swap replays it) or after it. Counted, those points lead to the next build as new ones do."""
        if self._build is not None:
            self._published_during_build.update(file_ids)
        return sum(self._pending_indexed.pop(file_id, 0) for file_id in file_ids)

    def _start_build(self) -> None:
        """Copy the shard and start the child on the copy (under the write lock). A build that cannot start (a full
        disk for the copy, no memory for the child) is tried again later like a failed build: the write that asked
        for it has happened, and the caller (that write, a finished build, a retry) must not fail for it."""
        target = build_dir(self.path)
        try:
            self._shard.flush()
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.path, target)
            build = BuildProcess(target, self._unindexed, point_count(self._shard), pending_files(self._shard))
        except Exception:
            log.exception("could not start the HNSW build")
            shutil.rmtree(target, ignore_errors=True)
            self._retry_later()
            return
        self._replay = []
        self._published_during_build = set()
        self._build = build
        self._unindexed = 0  # from here on: points written during the build (they stay in a plain segment)
        log.info("building the HNSW index of %d new points in the background", build.points)
        threading.Thread(target=self._finish_build, args=(build,), name="ragline-hnsw-build", daemon=True).start()

    def _finish_build(self, build: BuildProcess) -> None:
        built = build.wait()
        with self._write_lock:
            replay, self._replay = self._replay or [], None
            try:
                if not self._closed and built:
                    with self._gate.exclusive():
                        built = self._swap_in(build, replay)
                if not built or self._closed:  # the shard stays as it was: its points are still outside the index
                    self._unindexed += build.points
                    shutil.rmtree(build.directory, ignore_errors=True)
                    if not self._closed:
                        self._retry_later()
                    return
                for file_id, points in build.pending.items():
                    if file_id in self._published_during_build:  # the replayed publish moved them out again
                        self._unindexed += points
                    else:  # their publish will
                        self._pending_indexed[file_id] = points
                self._failed_builds = 0
            finally:
                self._build = None  # after the swap: whoever waits for the build sees its result
            log.info("HNSW index built in %.0f s; %d writes replayed", time.monotonic() - build.started, len(replay))
            # an ingest that went on during the build may have left enough for the next one: no write may come
            if self.index_threshold is not None and self._unindexed >= self.index_threshold:
                self._start_build()

    def _retry_later(self) -> None:
        """Start the build again after a delay that doubles with each failure in a row (under the write lock)."""
        delay = min(MAX_RETRY_AFTER_S, RETRY_AFTER_S * 2**self._failed_builds)
        self._failed_builds += 1
        log.warning("retrying the HNSW build in %.0f s (failure %d in a row)", delay, self._failed_builds)
        self._next_index_check = time.monotonic() + delay  # writes meanwhile do not start it sooner
        retry = threading.Timer(delay, self._retry_build)
        retry.daemon = True  # a pending retry never keeps the process alive; a closed store ignores it
        retry.start()

    def _retry_build(self) -> None:
        with self._write_lock:
            threshold = self.index_threshold
            if not self._closed and self._build is None and threshold is not None and self._unindexed >= threshold:
                self._start_build()

    def _swap_in(self, build: BuildProcess, replay: Sequence[qe.UpdateOperation]) -> bool:
        """Replace the live shard by the built copy plus ``replay`` (under the write lock and the read gate);
        False when the copy could not be used and the shard stays as it was."""
        marker, old = swap_marker(self.path), old_dir(self.path)
        self._shard.flush()
        self._shard.close()
        marker.touch()  # from here until the marker goes, a crash puts the old shard back (recover_swap)
        self.path.rename(old)
        build.directory.rename(self.path)
        try:
            shard = self._reopen()  # loads only: an emptied copy must not become a new empty shard
            try:
                _check_built(shard, build)
                for update in replay:
                    shard.update(update)
                shard.flush()
            except Exception:
                shard.close()
                raise
        except Exception:
            log.exception("swapping in the HNSW build failed; keeping the shard without it")
            shutil.rmtree(self.path, ignore_errors=True)
            old.rename(self.path)
            shard, swapped = self._reopen(), False
        else:
            swapped = True
        self._shard = shard
        self._writes += 2  # the IDF shortcut re-checks the new shard
        self._index_offset = index_offset(shard)
        marker.unlink()
        shutil.rmtree(old, ignore_errors=True)
        return swapped


def _check_built(shard: qe.EdgeShard, build: BuildProcess) -> None:
    """A copy that lost points (a segment gone from under the child, a disk error) is not swapped in: the exit
    status says the child finished, not that what it left is whole."""
    held = point_count(shard)
    if held != build.copied:
        raise EngineError(f"the HNSW build holds {held} points where its copy had {build.copied}")


def _main(directory: str) -> int:
    shard = qe.EdgeShard.load(directory)
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))

"""Does qdrant-edge hold the GIL during its calls? A ticker thread beside each kind of call says.

    python benchmarks/edge_gil.py [--points 20000]

``EdgeVectorStore`` runs short reads in the caller's thread and deletes in slices because qdrant-edge 0.9.0 holds
the GIL for the whole of each call (``engine/stores/edge.py``). This checks that fact for the installed version:
a thread sleeps 0.5 ms in a loop and counts its wake-ups while the main thread makes one call at a time (an exact
search, a count, a scroll, an upsert, a payload update, a flush, a delete) on a shard of ``--points`` synthetic
chunks. A call that releases the GIL lets the ticker run ~2,000 times a second of the call; one that holds it
lets it run once or not at all. Prints one JSON object and a table; writes ``--out``/edge_gil.json. Re-run it
when qdrant-edge is upgraded: if the calls release the GIL, worker threads for reads pay off again.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import qdrant_edge as qe  # noqa: E402

from benchmarks._results import add_out_argument, finish, run_info, write  # noqa: E402
from benchmarks.delete_stall import DIM, chunk_points  # noqa: E402
from engine.stores._common import DENSE_VECTOR  # noqa: E402
from engine.stores.edge_requests import edge_point, ensure_payload_indexes, open_shard  # noqa: E402

TICK_S = 0.0005


def edge_points(count: int, files: str, rng: np.random.Generator) -> list[qe.Point]:
    return [edge_point(point) for point in chunk_points(0, count, rng, kb_id="kb", files=files)]


class Ticker:
    """A thread that wakes every ``TICK_S`` and counts its wake-ups."""

    def __init__(self) -> None:
        self.ticks = 0
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._running:
            time.sleep(TICK_S)
            self.ticks += 1

    def during(self, call: Callable[[], Any]) -> dict[str, float]:
        time.sleep(0.02)  # let it settle between calls
        before, started = self.ticks, time.perf_counter()
        call()
        seconds = time.perf_counter() - started
        ticks = self.ticks - before
        free_running = seconds / TICK_S
        return {"call_ms": round(seconds * 1000, 1), "ticks": ticks, "ticks_if_released": round(free_running)}

    def stop(self) -> None:
        self._running = False
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=20000)
    add_out_argument(parser)
    args = parser.parse_args()
    run = run_info()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        shard = open_shard(Path(tmp) / "shard", DIM)
        ensure_payload_indexes(shard)
        for start in range(0, args.points, 1000):
            shard.update(qe.UpdateOperation.upsert_points(edge_points(1000, f"base-{start}", rng)))
        vector = rng.normal(size=DIM)
        query = qe.Query.Nearest((vector / np.linalg.norm(vector)).tolist(), using=DENSE_VECTOR)
        kb = qe.Filter(must=[qe.FieldCondition(key="kb_id", match=qe.MatchValue("kb"))])
        new = edge_points(2000, "new", rng)
        new_ids = qe.MatchAny([f"new-{n}" for n in range(40)])
        new_files = qe.Filter(must=[qe.FieldCondition(key="file_id", match=new_ids)])
        calls: dict[str, Callable[[], Any]] = {
            "query (exact, 100 hits with payloads)": lambda: shard.query(
                qe.QueryRequest(limit=100, query=query, with_payload=True, params=qe.SearchParams(exact=True))
            ),
            "count (exact, filtered)": lambda: shard.count(qe.CountRequest(exact=True, filter=kb)),
            "scroll (10,000 ids)": lambda: shard.scroll(qe.ScrollRequest(limit=10_000, with_payload=False)),
            "upsert (2,000 points)": lambda: shard.update(qe.UpdateOperation.upsert_points(new)),
            "set payload (2,000 points)": lambda: shard.update(
                qe.UpdateOperation.set_payload_by_filter(new_files, {"visibility": "published"})
            ),
            "flush": shard.flush,
            "delete (2,000 points by filter)": lambda: shard.update(
                qe.UpdateOperation.delete_points_by_filter(new_files)
            ),
            "control: time.sleep(0.05), which releases it": lambda: time.sleep(0.05),
        }
        ticker = Ticker()
        try:
            results = {name: ticker.during(call) for name, call in calls.items()}
        finally:
            ticker.stop()
            shard.close()
    report = {"qdrant_edge": _version(), "points": args.points, "calls": results, "run": finish(run)}
    print(json.dumps(report))
    print(f"\n{'call':<46}{'ms':>9}{'ticks':>8}{'if released':>13}")
    for name, r in results.items():
        print(f"{name:<46}{r['call_ms']:>9}{r['ticks']:>8}{r['ticks_if_released']:>13}")
    write(args.out, "edge_gil", report)


def _version() -> str:
    from importlib.metadata import version

    return version("qdrant-edge-py")


if __name__ == "__main__":
    main()

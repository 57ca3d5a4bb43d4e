"""How long deleting a large knowledge base stops the event loop (embedded store).

    python benchmarks/delete_stall.py [--points 20000] [--rounds 2]

qdrant-edge holds the GIL for the whole of each call, so while a delete runs no request is answered
(``EdgeVectorStore._delete_matching`` deletes in slices for that reason). Per round: a fresh shard with ``--points``
chunks in one knowledge base (384-d, 50 chunks per file), then ``delete_kb`` while an asyncio task ticks every
1 ms; reports the whole delete's time and the longest gap between two ticks. Prints one JSON object and a table;
writes ``--out``/delete_stall.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import add_out_argument, finish, run_info, write  # noqa: E402
from engine.stores.edge import EdgeVectorStore  # noqa: E402
from engine.types import ChunkRecord, SparseVector, VectorPoint  # noqa: E402

DIM = 384


def chunk_points(
    start: int, count: int, rng: np.random.Generator, *, kb_id: str = "big", files: str = "file"
) -> list[VectorPoint]:
    """Synthetic chunks ``start`` to ``start + count`` of one knowledge base, 50 per file (``<files>-<n // 50>``)."""
    points = []
    for n in range(start, start + count):
        vector = rng.normal(size=DIM)
        chunk = ChunkRecord(
            id=str(uuid.uuid4()), workspace_id="ws", kb_id=kb_id, file_id=f"{files}-{n // 50}", file_name="a.md",
            file_type="md", ordinal=n % 50, text="word " * 150,
        )  # fmt: skip
        sparse = SparseVector(indices=[1, 2, 3], values=[1.0, 1.0, 1.0])
        points.append(VectorPoint(chunk=chunk, dense=(vector / np.linalg.norm(vector)).tolist(), sparse=sparse))
    return points


async def one_round(points: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeVectorStore(Path(tmp) / "shard", DIM, index_threshold=None)
        try:
            for start in range(0, points, 1000):
                await store.upsert(chunk_points(start, min(1000, points - start), rng))
            gaps: list[float] = []
            deleting = True

            async def tick() -> None:
                last = time.perf_counter()
                while deleting:
                    await asyncio.sleep(0.001)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now

            ticker = asyncio.create_task(tick())
            await asyncio.sleep(0.05)
            gaps.clear()
            started = time.perf_counter()
            await store.delete_kb("ws", "big")
            took = time.perf_counter() - started
            deleting = False
            await ticker
        finally:
            await store.close()
    return {"delete_ms": round(took * 1000, 1), "longest_stall_ms": round(max(gaps) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    add_out_argument(parser)
    args = parser.parse_args()
    run = run_info()
    rounds = [asyncio.run(one_round(args.points, seed)) for seed in range(args.rounds)]
    report: dict[str, Any] = {
        "points": args.points,
        "rounds": rounds,
        "median_delete_ms": statistics.median(r["delete_ms"] for r in rounds),
        "median_longest_stall_ms": statistics.median(r["longest_stall_ms"] for r in rounds),
        "run": finish(run),
    }
    print(json.dumps(report))
    print(f"\n{'round':>5}{'delete ms':>11}{'longest stall ms':>18}")
    for n, r in enumerate(rounds, 1):
        print(f"{n:>5}{r['delete_ms']:>11}{r['longest_stall_ms']:>18}")
    write(args.out, "delete_stall", report)


if __name__ == "__main__":
    main()

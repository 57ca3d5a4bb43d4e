"""Server memory: the resident set of a real `ragline serve` at each stage of a day's use.

    python benchmarks/memory.py [--docs 1000] [--clients 16] [--seconds 10]
    python benchmarks/memory.py --data-dir /tmp/ragline-scifact-200-40   # serve the full SciFact store as it is

Starts a server on a fresh data directory (or on ``--data-dir``), then records its resident memory (``VmRSS``) and
peak (``VmHWM``) from ``/proc``: once the model is warm, after uploading and ingesting the first ``--docs`` SciFact
documents through the API (skipped with ``--data-dir``), and after ``--seconds`` of concurrent searches in each mode.
A sampler reads the whole process tree (the server and any parse sandboxes it starts) every 100 ms, so each stage
also reports the tree's highest total. Prints one JSON object and a table, and writes the object to
``--out``/memory.json. Linux only (it reads ``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import add_out_argument, finish, run_info, write  # noqa: E402
from benchmarks.http_search import ingest, load, load_docs, load_queries, mint_token, wait_ready  # noqa: E402

MIB = 1024 * 1024
SAMPLE_S = 0.1


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field in KiB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def descendants(pid: int) -> list[int]:
    """Every live process under ``pid`` (sandboxed parsers and the like), from each process's parent id."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


class TreeSampler:
    """The highest resident total of a process and its descendants, sampled in a thread until ``stop``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(status_kib(p, "VmRSS") for p in [self.pid, *descendants(self.pid)])
            self.peak_kib = max(self.peak_kib, total)
            self._stop.wait(SAMPLE_S)


def snapshot(pid: int, sampler: TreeSampler) -> dict[str, float]:
    return {
        "rss_mib": round(status_kib(pid, "VmRSS") / 1024, 1),
        "peak_rss_mib": round(status_kib(pid, "VmHWM") / 1024, 1),
        "tree_peak_mib": round(sampler.peak_kib / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--modes", default="dense,sparse,hybrid")
    parser.add_argument("--data-dir", type=Path, default=None, help="serve this ingested data directory as it is")
    add_out_argument(parser)
    args = parser.parse_args()
    from tests.e2e.conftest import start_server, stop_server

    run = run_info()
    env = {"RAGLINE_RATE_LIMIT_PER_MINUTE": "1000000",
           "RAGLINE_TORCH_THREADS": os.environ.get("RAGLINE_TORCH_THREADS", "2")}  # fmt: skip
    stages: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        token = mint_token(data_dir) if args.data_dir else "rl_" + secrets.token_urlsafe(32)
        server = start_server(data_dir, env, token)
        pid = server.process.pid
        try:
            with TreeSampler(pid) as sampler:
                wait_ready(server.base_url)
                stages["warm, idle"] = snapshot(pid, sampler)
            if not args.data_dir:
                with TreeSampler(pid) as sampler:
                    ingest(server.base_url, token, load_docs(args.docs))
                    stages[f"after ingesting {args.docs} docs"] = snapshot(pid, sampler)
            queries = load_queries()
            for mode in args.modes.split(","):
                with TreeSampler(pid) as sampler:
                    asyncio.run(load(server.base_url, token, mode, queries, args.clients, args.seconds))
                    stages[f"after {mode} searches"] = snapshot(pid, sampler)
        finally:
            stop_server(server)
    results: dict[str, Any] = {
        "data": str(args.data_dir) if args.data_dir else f"{args.docs} SciFact docs ingested over HTTP",
        "clients": args.clients, "seconds_per_mode": args.seconds, "stages": stages, "run": finish(run),
    }  # fmt: skip
    print(json.dumps(results))
    print(f"\n{'stage':<32}{'RSS MiB':>9}{'peak MiB':>10}{'tree peak MiB':>15}")
    for name, stage in stages.items():
        print(f"{name:<32}{stage['rss_mib']:>9}{stage['peak_rss_mib']:>10}{stage['tree_peak_mib']:>15}")
    write(args.out, "memory", results)


if __name__ == "__main__":
    main()

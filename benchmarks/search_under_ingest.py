"""Search latency while files are being ingested: a real `ragline serve`, concurrent clients, idle vs busy.

    python benchmarks/search_under_ingest.py [--docs 4600] [--clients 20] [--seconds 20] [--mode hybrid]

A knowledge base of the first N SciFact documents (4,600 give about 10,000 chunks) is ingested once and
kept in ``~/.cache/ragline/bench/`` for later runs. Then ``--clients`` concurrent clients search for
``--seconds`` while nothing else happens (idle), and again right after a 200-page PDF and a pathological
PDF (hundreds of thousands of drawing operators) are uploaded (ingest). A poller reads ``/health`` every
50 ms throughout. Prints one JSON object and a table: p50/p99 per phase and the ingest/idle ratio; writes the
object to ``--out``/search_under_ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import add_out_argument, finish, run_info, write  # noqa: E402
from benchmarks.http_search import load_docs, load_queries, percentile  # noqa: E402

CACHE = Path.home() / ".cache" / "ragline" / "bench"


def prepared_server(docs: int) -> tuple[Any, str]:
    """A server on a data dir holding the first ``docs`` SciFact documents (ingested on the first run only)."""
    from tests.e2e.conftest import start_server

    data = CACHE / f"search-under-ingest-{docs}"
    token_file = data.parent / f"{data.name}.token"
    fresh = not token_file.exists()
    token = token_file.read_text().strip() if not fresh else "rl_" + secrets.token_urlsafe(32)
    env = {"RAGLINE_RATE_LIMIT_PER_MINUTE": "1000000"}
    server = start_server(data, env, token)
    if fresh:
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
            kb = http.post("/api/v1/knowledge-bases", json={"name": "scifact"}).json()["data"]["id"]
            corpus = load_docs(docs)
            for start in range(0, len(corpus), 50):
                files = [("file", (f"{i}.md", text.encode())) for i, text in corpus[start : start + 50]]
                assert http.post(f"/api/v1/knowledge-bases/{kb}/files", files=files).status_code == 201
            started = time.monotonic()
            while http.get(f"/api/v1/knowledge-bases/{kb}/files", params={"status": "ready", "limit": 1}).json()[
                "pagination"
            ]["total"] < len(corpus) - 5:
                time.sleep(5)
            print(f"ingested {len(corpus)} documents in {time.monotonic() - started:.0f} s", file=sys.stderr)
        token_file.write_text(token)
    return server, token


async def phase(base: str, token: str, queries: list[str], clients: int, seconds: float, mode: str) -> dict[str, Any]:
    latencies: list[float] = []
    health: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            i = n
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await http.post("/api/v1/search", json={"query": queries[i % len(queries)], "mode": mode})
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 200
                i += clients

    async def poll_health() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            while time.monotonic() < stop:
                started = time.perf_counter()
                await http.get("/health")
                health.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.05)

    await asyncio.gather(poll_health(), *(client(n) for n in range(clients)))
    return {
        "requests": len(latencies), "errors": errors, "qps": round(len(latencies) / seconds, 1),
        "p50_ms": round(statistics.median(latencies), 1), "p99_ms": round(percentile(latencies, 0.99), 1),
        "health_p50_ms": round(statistics.median(health), 1), "health_p99_ms": round(percentile(health, 0.99), 1),
    }  # fmt: skip


def start_ingest(base: str, token: str) -> list[str]:
    """Upload the 200-page PDF and the pathological one into a scratch knowledge base; returns their file ids."""
    from tests.helpers.pdfs import many_operators_pdf, reportlab_pdf

    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        kb = http.post("/api/v1/knowledge-bases", json={"name": f"scratch-{secrets.token_hex(3)}"}).json()["data"]["id"]
        files = [("file", ("big.pdf", reportlab_pdf(200))), ("file", ("hostile.pdf", many_operators_pdf(400_000)))]
        uploaded = http.post(f"/api/v1/knowledge-bases/{kb}/files", files=files).json()["data"]
        return [kb, *(f["file"]["id"] for f in uploaded)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=4600)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--mode", default="hybrid")
    add_out_argument(parser)
    args = parser.parse_args()
    from tests.e2e.conftest import stop_server

    run = run_info()

    server, token = prepared_server(args.docs)
    try:
        queries = load_queries()
        asyncio.run(phase(server.base_url, token, queries, args.clients, 3, args.mode))  # warm-up
        idle = asyncio.run(phase(server.base_url, token, queries, args.clients, args.seconds, args.mode))
        kb, *file_ids = start_ingest(server.base_url, token)
        busy = asyncio.run(phase(server.base_url, token, queries, args.clients, args.seconds, args.mode))
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}) as http:
            states = [http.get(f"/api/v1/knowledge-bases/{kb}/files/{f}").json()["data"]["status"] for f in file_ids]
            http.delete(f"/api/v1/knowledge-bases/{kb}")
    finally:
        stop_server(server)
    result = {
        "docs": args.docs, "clients": args.clients, "seconds": args.seconds, "mode": args.mode,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "idle": idle, "ingest": busy, "ingest_files_after": states,
        "p99_ratio": round(busy["p99_ms"] / idle["p99_ms"], 2), "run": finish(run),
    }  # fmt: skip
    print(json.dumps(result))
    print(f"\n{'phase':<8}{'qps':>7}{'p50 ms':>9}{'p99 ms':>9}{'health p99':>12}{'errors':>8}")
    for name, r in (("idle", idle), ("ingest", busy)):
        print(f"{name:<8}{r['qps']:>7}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['health_p99_ms']:>12}{r['errors']:>8}")
    print(f"p99 ingest/idle: {result['p99_ratio']}")
    write(args.out, "search_under_ingest", result)


if __name__ == "__main__":
    main()

"""An upload pipeline over HTTP: SciFact abstracts posted to a real `ragline serve` until every file is ready.

    python benchmarks/http_ingest.py [--docs 500] [--clients 4] [--per-request 1 10] [--threads 2]

Each case starts a fresh server (its own data directory, ``--threads`` embedding threads), creates a knowledge
base and has ``--clients`` concurrent httpx clients post the documents as Markdown files, ``--per-request`` files
per multipart request, while the server ingests them; the clock runs from the first upload until the file list
says every file is ``ready``. Clients and server share the machine's cores, as an upload script next to its server
would. Reported per case: chunks/s end to end, when the uploads finished, and the CPU seconds the server spent
during the uploads and after them, and the clients' own. ``benchmarks/ingest.py`` measures the same documents in
process, against the bare model. Prints one JSON object and a table; writes ``--out``/http_ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import add_out_argument, finish, run_info, write  # noqa: E402
from benchmarks.http_search import cpu_seconds  # noqa: E402
from benchmarks.ingest import scifact_docs  # noqa: E402


async def upload_all(
    base_url: str, token: str, docs: list[tuple[str, str]], clients: int, per_request: int, pid: int
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as http:
        created = await http.post("/api/v1/knowledge-bases", json={"name": "http-ingest"})
        kb = created.json()["data"]["id"]
        waiting = list(docs)

        async def client() -> None:
            while waiting:
                group = [waiting.pop() for _ in range(min(per_request, len(waiting)))]
                files = [("file", (f"{doc_id}.md", text.encode(), "text/markdown")) for doc_id, text in group]
                response = await http.post(f"/api/v1/knowledge-bases/{kb}/files", files=files)
                response.raise_for_status()

        started, server_cpu, own_cpu = time.perf_counter(), cpu_seconds(pid), cpu_seconds()
        await asyncio.gather(*(client() for _ in range(clients)))
        uploaded, server_cpu_uploading = time.perf_counter() - started, cpu_seconds(pid) - server_cpu
        client_cpu = cpu_seconds() - own_cpu
        ready = {"status": "ready", "limit": 1}
        while True:
            page = (await http.get(f"/api/v1/knowledge-bases/{kb}/files", params=ready)).json()
            if page["pagination"]["total"] >= len(docs):
                break
            await asyncio.sleep(0.2)
        wall = time.perf_counter() - started
        chunks = await _chunks(http, kb)
    return {
        "files": len(docs), "chunks": chunks, "clients": clients, "per_request": per_request,
        "wall_s": round(wall, 2), "uploads_done_s": round(uploaded, 2), "chunks_per_s": round(chunks / wall, 2),
        "server_cpu_s_uploading": round(server_cpu_uploading, 2),
        "server_cpu_s_after": round(cpu_seconds(pid) - server_cpu - server_cpu_uploading, 2),
        "client_cpu_s": round(client_cpu, 2),
    }  # fmt: skip


async def _chunks(http: httpx.AsyncClient, kb: str) -> int:
    """Chunks of every file in ``kb``, read page by page from the file list."""
    total, page, pages = 0, 1, 1
    while page <= pages:
        listing = (await http.get(f"/api/v1/knowledge-bases/{kb}/files", params={"limit": 100, "page": page})).json()
        total += sum(item["chunks_total"] for item in listing["data"])
        pages, page = listing["pagination"]["total_pages"], page + 1
    return total


def run_case(docs: list[tuple[str, str]], clients: int, per_request: int, threads: int) -> dict[str, Any]:
    from tests.e2e.conftest import start_server, stop_server

    token = "rl_" + secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as tmp:
        # the e2e helper pins one embedding thread for tests; a benchmark gives the server what it would have
        env = {"RAGLINE_RATE_LIMIT_PER_MINUTE": "1000000", "RAGLINE_TORCH_THREADS": str(threads)}
        server = start_server(Path(tmp) / "data", env, token)
        try:
            return asyncio.run(upload_all(server.base_url, token, docs, clients, per_request, server.process.pid))
        finally:
            stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--per-request", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--threads", type=int, default=2, help="the server's embedding threads")
    parser.add_argument("--rounds", type=int, default=2, help="cases alternate within each round")
    add_out_argument(parser)
    args = parser.parse_args()
    run = run_info()
    docs = scifact_docs(args.docs)
    cases = [
        {"round": n + 1, **run_case(docs, args.clients, per_request, args.threads)}
        for n in range(args.rounds)
        for per_request in args.per_request
    ]
    report = {"docs": args.docs, "threads": args.threads, "cases": cases, "run": finish(run)}
    print(json.dumps(report))
    print(f"\n{'round':>5}{'files/req':>10}{'chunks':>8}{'uploads s':>11}{'wall s':>8}{'chunks/s':>10}"
          f"{'server cpu s':>14}{'client cpu s':>14}")  # fmt: skip
    for case in cases:
        cpu = case["server_cpu_s_uploading"] + case["server_cpu_s_after"]
        print(f"{case['round']:>5}{case['per_request']:>10}{case['chunks']:>8}{case['uploads_done_s']:>11}"
              f"{case['wall_s']:>8}{case['chunks_per_s']:>10}{cpu:>14.2f}{case['client_cpu_s']:>14}")  # fmt: skip
    write(args.out, "http_ingest", report)


if __name__ == "__main__":
    main()

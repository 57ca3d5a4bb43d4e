"""Search throughput through the HTTP API: a real `ragline serve`, 16 concurrent clients.

    python benchmarks/http_search.py [--docs 1000] [--clients 16] [--seconds 20] [--modes dense,sparse,hybrid]
    python benchmarks/http_search.py --data-dir /tmp/ragline-scifact-200-40   # reuse the full SciFact store

Ingests the first N SciFact documents through the API (or serves a data directory that holds an ingested
corpus, e.g. retrieval_quality.py's 11k-chunk SciFact store, with a token minted by ``ragline token create``),
then runs SciFact test queries from concurrent clients for a fixed time per mode, while one more client asks
``GET /health`` every 50 ms. Prints one JSON object and a short table, and writes the object to
``--out``/http_search.json. Clients and server share the machine's cores: each mode also reports the CPU time
the server and the load generator spent per request, the server's event-loop thread's share of it (one core at
most: the part no second core helps), and the machine's steal time (a busy host slows every number here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"

from benchmarks._results import add_out_argument, finish, run_info, write  # noqa: E402


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process: this one by default (the load generator), else ``pid``."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def event_loop_cpu_seconds(pid: int) -> float:
    """CPU time of a process's main thread, where its event loop runs (one core at most, whatever the machine)."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def _stat_cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ticks() -> tuple[int, int]:
    """The machine's (steal, total) CPU ticks: steal is time the hypervisor gave our vCPUs to someone else."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])


def load_docs(limit: int) -> list[tuple[str, str]]:
    docs = []
    with (SCIFACT / "corpus.jsonl").open() as fh:
        for line in fh:
            row = json.loads(line)
            docs.append((row["_id"], f"# {row['title']}\n\n{row['text']}"))
            if len(docs) >= limit:
                break
    return docs


def load_queries() -> list[str]:
    with (SCIFACT / "queries.jsonl").open() as fh:
        return [json.loads(line)["text"] for line in fh]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(base: str, token: str, mode: str, queries: list[str], clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    health: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def probe() -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await http.get("/health")
                health.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 200
                await asyncio.sleep(0.05)

    async def client(n: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            i = n
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await http.post(
                    "/api/v1/search", json={"query": queries[i % len(queries)], "top_k": 10, "mode": mode}
                )
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 200
                i += clients

    started = time.monotonic()
    await asyncio.gather(probe(), *(client(n) for n in range(clients)))
    wall = time.monotonic() - started
    return {
        "requests": len(latencies),
        "errors": errors,
        "qps": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "health_p50_ms": round(statistics.median(health), 1),
        "health_p99_ms": round(percentile(health, 0.99), 1),
    }


def ingest(base: str, token: str, docs: list[tuple[str, str]]) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        kb = http.post("/api/v1/knowledge-bases", json={"name": "scifact"}).json()["data"]["id"]
        for start in range(0, len(docs), 50):
            files = [("file", (f"{i}.md", text.encode())) for i, text in docs[start : start + 50]]
            assert http.post(f"/api/v1/knowledge-bases/{kb}/files", files=files).status_code == 201
        while True:
            body = http.get(f"/api/v1/knowledge-bases/{kb}/files", params={"status": "ready", "limit": 1}).json()
            if body["pagination"]["total"] >= len(docs) - 5:
                break
            time.sleep(2)


def wait_ready(base: str, timeout_s: float = 120) -> None:
    """Until ``/health`` says the warm-up is done (the model loaded), so no client times the warm-up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and httpx.get(f"{base}/health", timeout=10).json().get("status") == "warming":
        time.sleep(0.5)


def mint_token(data_dir: Path) -> str:
    """An admin token of the data directory's ``default`` workspace, from the CLI (as an operator gets one)."""
    env = {**os.environ, "RAGLINE_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "api.cli", "token", "create", "--role", "admin", "--user", "bench-http"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--modes", default="dense,sparse,hybrid")
    parser.add_argument("--data-dir", type=Path, default=None, help="serve this ingested data directory as it is")
    add_out_argument(parser)
    args = parser.parse_args()
    from tests.e2e.conftest import start_server, stop_server

    run = run_info()

    env = {
        "RAGLINE_RATE_LIMIT_PER_MINUTE": "1000000",
        "RAGLINE_TORCH_THREADS": os.environ.get("RAGLINE_TORCH_THREADS", "2"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        token = mint_token(data_dir) if args.data_dir else "rl_" + secrets.token_urlsafe(32)
        server = start_server(data_dir, env, token)
        try:
            if not args.data_dir:
                ingest(server.base_url, token, load_docs(args.docs))
            wait_ready(server.base_url)
            queries = load_queries()
            results = {
                "docs": args.docs if not args.data_dir else str(args.data_dir), "clients": args.clients,
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "access_log": os.environ.get("RAGLINE_ACCESS_LOG", "true"),  # the server's line per request costs
            }  # fmt: skip
            for mode in args.modes.split(","):
                asyncio.run(load(server.base_url, token, mode, queries, args.clients, 3))  # warm-up
                pid = server.process.pid
                server_cpu, loop_cpu, client_cpu = cpu_seconds(pid), event_loop_cpu_seconds(pid), cpu_seconds()
                steal, ticks = cpu_ticks()
                results[mode] = measured = asyncio.run(
                    load(server.base_url, token, mode, queries, args.clients, args.seconds)
                )
                # the load generator shares the cores with the server: how much each took, per request
                requests = max(1, measured["requests"])
                measured["server_cpu_ms_per_request"] = round(
                    (cpu_seconds(pid) - server_cpu) * 1000 / requests, 2
                )
                measured["server_event_loop_cpu_ms_per_request"] = round(
                    (event_loop_cpu_seconds(pid) - loop_cpu) * 1000 / requests, 2
                )
                steal_end, ticks_end = cpu_ticks()
                measured["steal_pct"] = round(100 * (steal_end - steal) / max(1, ticks_end - ticks), 1)
                measured["client_cpu_ms_per_request"] = round((cpu_seconds() - client_cpu) * 1000 / requests, 2)
        finally:
            stop_server(server)
    results["run"] = finish(run)
    print(json.dumps(results))
    print(f"\n{'mode':<8}{'qps':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}{'health p99':>11}"
          f"{'server cpu ms/req':>19}{'event loop ms/req':>19}{'client cpu ms/req':>19}{'steal %':>9}")
    for mode in args.modes.split(","):
        r = results[mode]
        print(f"{mode:<8}{r['qps']:>8}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}"
              f"{r['health_p99_ms']:>11}{r['server_cpu_ms_per_request']:>19}"
              f"{r['server_event_loop_cpu_ms_per_request']:>19}{r['client_cpu_ms_per_request']:>19}{r['steal_pct']:>9}")
    write(args.out, "http_search", results)


if __name__ == "__main__":
    main()

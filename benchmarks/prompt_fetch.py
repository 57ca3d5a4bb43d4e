"""Runtime prompt fetch through the HTTP API: a real `ragline serve`, a prompt with a 30/70 rollout, warm cache.

    python benchmarks/prompt_fetch.py [--requests 3000] [--keys 1000] [--clients 8] [--seconds 10]

Measures ``GET /api/v1/sdk/prompts/{key}?assignment_key=...`` (token check, environment and rollout resolution,
the cached answer) from one keep-alive client: full answers (200), revalidations with ``If-None-Match`` (304)
and calls without an assignment key (the live version); then throughput with concurrent clients. Latency is
measured in the client (httpx), so it includes the client's own overhead; ``auth_floor`` is an authenticated route
that does nothing else, for comparison. Prints one JSON object and a table, and writes the object to
``--out``/prompt_fetch.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import add_out_argument, finish, run_info, write  # noqa: E402

KEY = "support-reply"
MESSAGES = [
    {"role": "system", "content": "You are {{ persona }}. Answer in {{ language }}, briefly and politely."},
    {"role": "user", "content": "{{ question }}"},
]
VARIABLES = [
    {"name": "persona", "type": "string", "default": "Ragline support"},
    {"name": "language", "type": "string", "default": "English"},
    {"name": "question", "type": "string"},
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(latencies: list[float], errors: int) -> dict[str, float]:
    return {
        "requests": len(latencies), "errors": errors, "p50_ms": round(statistics.median(latencies), 3),
        "p95_ms": round(percentile(latencies, 0.95), 3), "p99_ms": round(percentile(latencies, 0.99), 3),
        "max_ms": round(max(latencies), 3),
    }  # fmt: skip


def setup(http: httpx.Client) -> str:
    prompt = http.post("/api/v1/prompts", json={"key": KEY, "messages": MESSAGES, "variables": VARIABLES})
    assert prompt.status_code == 201, prompt.text
    prompt_id = prompt.json()["data"]["id"]
    for system in ("Policy one.", "Policy two."):
        edited = http.patch(f"/api/v1/prompts/{prompt_id}", json={"messages": [
            {"role": "system", "content": f"{MESSAGES[0]['content']} {system}"}, MESSAGES[1]]})  # fmt: skip
        assert edited.status_code == 200, edited.text
        assert http.post(f"/api/v1/prompts/{prompt_id}/publish", json={"note": system}).status_code == 201
    rollout = http.put(f"/api/v1/prompts/{prompt_id}/rollout", json={"variants": [
        {"version": 1, "weight": 30}, {"version": 2, "weight": 70}]})  # fmt: skip
    assert rollout.status_code == 200, rollout.text
    return str(prompt_id)


def floor(http: httpx.Client, n: int) -> dict:
    """An authenticated route that reads nothing else (``/playground/providers``): token check and framework."""
    latencies: list[float] = []
    errors = 0
    for _ in range(n):
        started = time.perf_counter()
        errors += http.get("/api/v1/playground/providers").status_code != 200
        latencies.append((time.perf_counter() - started) * 1000)
    return summary(latencies, errors)


def sequential(http: httpx.Client, keys: list[str], n: int, etags: dict[str, str] | None, key_param: bool) -> dict:
    latencies: list[float] = []
    errors = 0
    versions: dict[int, int] = {}
    want = 304 if etags is not None else 200
    for i in range(n):
        key = keys[i % len(keys)]
        params = {"assignment_key": key} if key_param else {}
        headers = {"If-None-Match": etags[key]} if etags is not None else {}
        started = time.perf_counter()
        response = http.get(f"/api/v1/sdk/prompts/{KEY}", params=params, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000)
        errors += response.status_code != want
        if want == 200 and response.status_code == 200:
            version = response.json()["data"]["version"]
            versions[version] = versions.get(version, 0) + 1
    out = summary(latencies, errors)
    if versions:
        out["versions"] = {str(k): v for k, v in sorted(versions.items())}
    return out


async def concurrent(base: str, token: str, keys: list[str], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            i = n
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await http.get(f"/api/v1/sdk/prompts/{KEY}", params={"assignment_key": keys[i % len(keys)]})
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 200
                i += clients

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(clients)))
    out = summary(latencies, errors)
    out["rps"] = round(len(latencies) / (time.monotonic() - started), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    add_out_argument(parser)
    args = parser.parse_args()
    from tests.e2e.conftest import start_server, stop_server

    run = run_info()

    keys = [f"user-{i}" for i in range(args.keys)]
    results: dict[str, object] = {"keys": args.keys, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        token = "rl_" + secrets.token_urlsafe(32)
        server = start_server(Path(tmp) / "data", {"RAGLINE_RATE_LIMIT_PER_MINUTE": "100000000",
                                                   "RAGLINE_LOG_LEVEL": "WARNING"}, token)  # fmt: skip
        try:
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=server.base_url, headers=auth, timeout=30) as http:
                setup(http)
                sequential(http, keys, len(keys), None, True)  # warm: every key once
                etags = {k: http.get(f"/api/v1/sdk/prompts/{KEY}", params={"assignment_key": k}).headers["etag"]
                         for k in keys}  # fmt: skip
                results["rollout_200"] = sequential(http, keys, args.requests, None, True)
                results["rollout_304"] = sequential(http, keys, args.requests, etags, True)
                results["live_no_key_200"] = sequential(http, keys, args.requests, None, False)
                results["auth_floor"] = floor(http, args.requests)
            results["load_avg_1m"] = round(os.getloadavg()[0], 2)
            results[f"concurrent_{args.clients}"] = asyncio.run(
                concurrent(server.base_url, token, keys, args.clients, args.seconds)
            )
        finally:
            stop_server(server)
    results["run"] = finish(run)
    print(json.dumps(results))
    print(f"\n{'case':<16}{'requests':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}{'rps':>8}")
    for case in ("rollout_200", "rollout_304", "live_no_key_200", "auth_floor", f"concurrent_{args.clients}"):
        r = results[case]
        assert isinstance(r, dict)
        print(f"{case:<16}{r['requests']:>9}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}{r['max_ms']:>9}"
              f"{r['errors']:>8}{r.get('rps', ''):>8}")  # fmt: skip
    write(args.out, "prompt_fetch", results)


if __name__ == "__main__":
    main()

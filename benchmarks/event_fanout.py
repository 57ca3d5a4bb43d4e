"""Event fan-out to live WebSocket clients: a real `ragline serve`, N clients on ``/api/v1/ws``, events emitted
through ``POST /api/v1/events``.

    python benchmarks/event_fanout.py [--clients 100] [--paced 200] [--rate 50] [--burst 500] [--emitters 8]

Two phases. ``paced``: events at a steady rate (well below saturation): the latency of each (event, client) pair
from the emit (the event's ``ts``, set by the server when it takes the event) and from the client's POST (its
``sent`` time, the HTTP request and the commit included) to the client's receipt. ``burst``: ``--emitters``
concurrent posters as fast as they can: events/s stored and deliveries/s (events x clients) received, and the
latency under that load. Clients and server share the machine (and its clock). Prints one JSON object and a
table, and writes the object to ``--out``/event_fanout.json.
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
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import add_out_argument, finish, run_info, write  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values), "p50_ms": round(statistics.median(values), 2), "p95_ms": round(percentile(values, 0.95), 2),
        "p99_ms": round(percentile(values, 0.99), 2), "max_ms": round(max(values), 2),
    }  # fmt: skip


class Clients:
    """N WebSocket clients; each records (phase, latency from emit, latency from POST) per event received."""

    def __init__(self, url: str, token: str, n: int) -> None:
        self.url, self.token, self.n = url, token, n
        self.received: dict[str, list[tuple[float, float]]] = {}
        self.counts: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = 0

    async def _client(self) -> None:
        async with connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"},
                           max_queue=None) as socket:  # fmt: skip
            await socket.recv()  # hello
            self._ready += 1
            async for raw in socket:
                now = time.time()
                message = json.loads(raw)
                if message.get("op") != "event":
                    continue
                event = message["event"]
                phase = event["type"]
                emitted = datetime.fromisoformat(event["ts"]).timestamp()
                self.received.setdefault(phase, []).append(
                    ((now - emitted) * 1000, (now - event["payload"]["sent"]) * 1000)
                )
                self.counts[phase] = self.counts.get(phase, 0) + 1

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.n)]
        while self._ready < self.n:
            await asyncio.sleep(0.05)
            for task in self._tasks:
                if task.done() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        await asyncio.sleep(0.6)  # past the server's wait for a first "resume" message

    async def wait_for(self, phase: str, expected: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.counts.get(phase, 0) < expected and time.monotonic() < deadline:  # noqa: ASYNC110 (a deadline)
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def post(http: httpx.AsyncClient, phase: str, n: int) -> None:
    response = await http.post("/api/v1/events", json={"type": phase, "payload": {"n": n, "sent": time.time()}})
    response.raise_for_status()


async def run(base: str, token: str, args: argparse.Namespace) -> dict[str, Any]:
    clients = Clients(base.replace("http://", "ws://") + "/api/v1/ws", token, args.clients)
    await clients.start()
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        for n in range(5):  # warm up the route and the writer
            await post(http, "bench.warm", n)
        await clients.wait_for("bench.warm", 5 * args.clients)

        started = time.monotonic()
        for n in range(args.paced):
            await post(http, "bench.paced", n)
            await asyncio.sleep(max(0.0, started + (n + 1) / args.rate - time.monotonic()))
        await clients.wait_for("bench.paced", args.paced * args.clients)
        paced = clients.received.get("bench.paced", [])
        out["paced"] = {
            "events": args.paced, "rate_per_s": args.rate, "deliveries": len(paced),
            "from_emit": summary([a for a, _ in paced]), "from_post": summary([b for _, b in paced]),
        }  # fmt: skip

        counter = iter(range(args.burst))
        started = time.monotonic()

        async def emitter() -> None:
            for n in counter:
                await post(http, "bench.burst", n)

        await asyncio.gather(*(emitter() for _ in range(args.emitters)))
        stored_s = time.monotonic() - started
        await clients.wait_for("bench.burst", args.burst * args.clients)
        received_s = time.monotonic() - started
        burst = clients.received.get("bench.burst", [])
        out["burst"] = {
            "events": args.burst, "emitters": args.emitters, "deliveries": len(burst),
            "events_per_s": round(args.burst / stored_s, 1), "deliveries_per_s": round(len(burst) / received_s, 1),
            "from_emit": summary([a for a, _ in burst]), "from_post": summary([b for _, b in burst]),
        }  # fmt: skip
        listed = (await http.get("/api/v1/clients")).json()["data"]
        out["clients_listed"] = len(listed)
    await clients.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--paced", type=int, default=200, help="events in the paced phase")
    parser.add_argument("--rate", type=float, default=50, help="events per second in the paced phase")
    parser.add_argument("--burst", type=int, default=500, help="events in the burst phase")
    parser.add_argument("--emitters", type=int, default=8, help="concurrent posters in the burst phase")
    add_out_argument(parser)
    args = parser.parse_args()
    from tests.e2e.conftest import start_server, stop_server

    info = run_info()
    results: dict[str, Any] = {"clients": args.clients, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        token = "rl_" + secrets.token_urlsafe(32)
        env = {"RAGLINE_RATE_LIMIT_PER_MINUTE": "100000000", "RAGLINE_LOG_LEVEL": "WARNING"}
        server = start_server(Path(tmp) / "data", env, token)
        try:
            results.update(asyncio.run(run(server.base_url, token, args)))
        finally:
            stop_server(server)
    results["run"] = finish(info)
    print(json.dumps(results))
    print(f"\n{'phase':<8}{'events':>8}{'deliveries':>12}{'ev/s':>8}{'deliv/s':>10}"
          f"{'p50 emit':>10}{'p99 emit':>10}{'p50 post':>10}{'p99 post':>10}  (ms)")  # fmt: skip
    for phase in ("paced", "burst"):
        r = results[phase]
        rate = r.get("events_per_s", r.get("rate_per_s"))
        print(f"{phase:<8}{r['events']:>8}{r['deliveries']:>12}{rate:>8}{r.get('deliveries_per_s', ''):>10}"
              f"{r['from_emit'].get('p50_ms', ''):>10}{r['from_emit'].get('p99_ms', ''):>10}"
              f"{r['from_post'].get('p50_ms', ''):>10}{r['from_post'].get('p99_ms', ''):>10}")  # fmt: skip
    write(args.out, "event_fanout", results)


if __name__ == "__main__":
    main()

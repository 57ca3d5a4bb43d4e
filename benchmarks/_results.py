"""Where benchmark scripts put their results: ``--out DIR`` (default ``benchmarks/results/``), one ``<name>.json``.

Each script prints its JSON object as before and writes the same object to ``DIR/<name>.json``, with a ``run``
entry that says when and where it ran: date, CPU model and count, the 1/5/15-minute load average at the start and
at the end (other jobs share the development machine, so the load belongs next to every number), and a speed
probe at both ends: the development machine's speed swings by up to 1.7x within an hour with no load to show for
it (a shared host), so each result carries how fast a fixed piece of Python ran when it was measured.
``benchmarks/plots.py`` draws the figures the README shows from these files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def add_out_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=lambda s: Path(s) if s else None, default=RESULTS,
        help="write the JSON result to DIR/<name>.json (default: benchmarks/results/; --out '' writes nothing)",
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def speed_probe_ms() -> float:
    """Milliseconds a fixed pure-Python loop (1 M additions) takes: the best of three, so a context switch in one
    try does not count. Higher means a slower machine state: 53-57 ms on the 2-core Xeon in the slow spell of
    2026-12-06 06:30 UTC, when the benchmarks ran 1.4-1.7x slower than that morning."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(1_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def run_info() -> dict[str, Any]:
    """Call when the benchmark starts; :func:`finish` adds the end of the run."""
    return {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_start": _load(),
        "speed_probe_ms_start": speed_probe_ms(),
    }


def finish(run: dict[str, Any]) -> dict[str, Any]:
    probe = speed_probe_ms()
    started = dt.datetime.fromisoformat(run["started"])
    now = dt.datetime.now(dt.UTC)
    return {**run, "wall_s": round((now - started).total_seconds(), 1), "load_avg_end": _load(),
            "speed_probe_ms_end": probe}  # fmt: skip


def write(out: Path | None, name: str, report: dict[str, Any]) -> Path | None:
    """Write ``report`` to ``out/<name>.json`` (nothing when ``out`` is empty); returns the path written."""
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path

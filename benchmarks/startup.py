"""Start-up: how long until a new `ragline serve` answers ``/health``, and how long a `ragline search` takes.

    python benchmarks/startup.py [--rounds 3] [--root CHECKOUT] [--root OTHER_CHECKOUT ...]

For each round and each checkout (alternating, so a slow spell of this shared machine hits every checkout alike):
a server on a new data directory (migrations included) until ``/health`` is 200, a restart on the same directory,
then the CLI: ``ingest`` of one Markdown file and a ``search``, each a new process (imports, settings, the model,
the store). The bundled model's ONNX export is made before the first round. Medians per checkout; prints one JSON
object and a table, and writes the object to ``--out``/startup.json. ``--cold`` drops the model's files (the
bundled weights and tokenizer, the ONNX export) from the page cache before every process, as after a reboot or in a
new container: what a start reads of them then comes from the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import add_out_argument, finish, run_info, write  # noqa: E402
from tests.e2e.conftest import free_port  # noqa: E402

NOTE = "# Office hours\n\nThe office closes at six on Fridays and opens at eight on Mondays.\n"


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "RAGLINE_DATA_DIR": str(data_dir), "RAGLINE_TORCH_THREADS": "1", **extra}


def evict_model_files() -> None:
    """Drop the model's files from the page cache (``posix_fadvise DONTNEED``: no root needed, clean pages only)."""
    from engine.embedders.sentence_transformer import bundled_model_path
    from engine.settings import Settings

    for directory in (bundled_model_path(), Settings.from_env(os.environ).model_cache_dir):
        for path in directory.rglob("*"):
            if path.is_file():
                descriptor = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(descriptor)


def server_start_s(root: Path, data_dir: Path, *, cold: bool = False) -> float:
    """Seconds from spawning ``ragline serve`` until ``/health`` answers 200 (the server is stopped after)."""
    port = free_port()
    if cold:
        evict_model_files()
    env = _env(data_dir, RAGLINE_PORT=str(port), RAGLINE_BOOTSTRAP_TOKEN="rl_" + secrets.token_urlsafe(32))
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve"], cwd=root, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        while time.perf_counter() - started < 120:
            if process.poll() is not None:
                raise RuntimeError(f"the server in {root} exited with {process.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"the server in {root} was not healthy in 120 s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def cli_s(root: Path, data_dir: Path, *args: str, cold: bool = False) -> float:
    if cold:
        evict_model_files()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=root, env=_env(data_dir), check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    return time.perf_counter() - started


def one_round(root: Path, scratch: Path, *, cold: bool) -> dict[str, float]:
    data_dir = scratch / "data"
    first = server_start_s(root, data_dir, cold=cold)
    again = server_start_s(root, data_dir, cold=cold)
    (scratch / "office.md").write_text(NOTE)
    ingest = cli_s(root, data_dir, "ingest", str(scratch / "office.md"), "--kb", "notes", "--create", cold=cold)
    search = cli_s(root, data_dir, "search", "when does the office close", "--kb", "notes", cold=cold)
    return {"server_first_start_s": first, "server_restart_s": again, "cli_ingest_s": ingest, "cli_search_s": search}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--root", type=Path, action="append", help="a checkout to start (default: this one)")
    parser.add_argument("--cold", action="store_true", help="the model's files out of the page cache at each start")
    add_out_argument(parser)
    args = parser.parse_args()
    roots = [path.resolve() for path in args.root or [ROOT]]
    info = run_info()
    # the model's ONNX export (once per machine) outside the clock
    subprocess.run([sys.executable, "-c", "from engine.embedders import create_embedder; from engine.settings "
                    "import Settings; create_embedder(Settings.from_env()).warm_up()"],
                   cwd=roots[0], check=True, capture_output=True, timeout=600)  # fmt: skip
    samples: dict[str, list[dict[str, float]]] = {str(root): [] for root in roots}
    for _ in range(args.rounds):
        for root in roots:
            with tempfile.TemporaryDirectory() as tmp:
                samples[str(root)].append(one_round(root, Path(tmp), cold=args.cold))
    results: dict[str, Any] = {"rounds": args.rounds, "cold": args.cold, "checkouts": {}}
    for root, rounds in samples.items():
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        results["checkouts"][root] = {
            "commit": commit.stdout.strip(),
            **{key: round(statistics.median(r[key] for r in rounds), 2) for key in rounds[0]},
            "samples": [{key: round(value, 2) for key, value in r.items()} for r in rounds],
        }
    results["run"] = finish(info)
    print(json.dumps(results))
    print(f"\n{'checkout':<40}{'commit':>9}{'serve':>8}{'restart':>9}{'ingest':>8}{'search':>8}  (s, medians)")
    for root, r in results["checkouts"].items():
        print(f"{root[-40:]:<40}{r['commit']:>9}{r['server_first_start_s']:>8}{r['server_restart_s']:>9}"
              f"{r['cli_ingest_s']:>8}{r['cli_search_s']:>8}")  # fmt: skip
    write(args.out, "startup_cold" if args.cold else "startup", results)


if __name__ == "__main__":
    main()

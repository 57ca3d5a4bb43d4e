"""The embedded shard's search pool has one thread per usable core (``engine.stores.edge_requests.SEARCH_THREADS``),
also for a shard that was saved with another count (the engine persists the count; what Ragline passes wins)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import glob, sys, time
from pathlib import Path
from engine.stores.edge_requests import SEARCH_THREADS, open_shard

def pool():
    return sum(1 for comm in glob.glob("/proc/self/task/*/comm") if open(comm).read().startswith("edge-search"))

shard = open_shard(Path(sys.argv[1]), 8)
# a thread names itself once it runs: read until the count has held for half a second (at most 20 s)
seen, since, deadline = pool(), time.monotonic(), time.monotonic() + 20
while time.monotonic() - since < 0.5 and time.monotonic() < deadline:
    time.sleep(0.05)
    if (now := pool()) != seen:
        seen, since = now, time.monotonic()
print(SEARCH_THREADS, seen)
"""


def pool_size(shard_dir: Path) -> tuple[int, int]:
    # a process of its own: shards opened by other tests in this one have pools of their own
    done = subprocess.run([sys.executable, "-c", PROBE, str(shard_dir)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    wanted, pool = (int(n) for n in done.stdout.split())
    return wanted, pool


def test_one_search_thread_per_core_for_new_and_saved_shards(tmp_path: Path) -> None:
    shard = tmp_path / "shard"
    wanted, pool = pool_size(shard)  # created
    assert pool == wanted >= 1
    config_file = shard / "edge_config.json"
    saved = json.loads(config_file.read_text())
    assert saved["max_search_threads"] == wanted
    config_file.write_text(json.dumps({**saved, "max_search_threads": wanted + 7}))  # as another machine left it
    assert pool_size(shard) == (wanted, wanted)
    assert json.loads(config_file.read_text())["max_search_threads"] == wanted

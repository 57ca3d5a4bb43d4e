"""``ragline eval --kb NAME golden.jsonl``: the same evaluation and history from the terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.evaluation.corpus import EXPECTED, golden_jsonl, write_docs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^(\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", re.M)


def ragline(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "RAGLINE_DATA_DIR": str(data_dir), "RAGLINE_TORCH_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=300
    )


def table(output: str) -> dict[str, tuple[float, ...]]:
    return {m.group(1): tuple(float(g) for g in m.groups()[1:4]) for m in ROW.finditer(output)}


def test_eval_prints_the_metrics_keeps_history_and_shows_a_worse_setting(tmp_path: Path) -> None:
    data = tmp_path / "data"
    docs = write_docs(tmp_path / "docs")
    golden = golden_jsonl(tmp_path / "golden.jsonl")
    ingest = ragline(data, "ingest", str(docs), "--kb", "topics", "--create")
    assert ingest.returncode == 0, ingest.stderr

    first = ragline(data, "eval", str(golden), "--kb", "topics")
    assert first.returncode == 0, first.stderr
    rows = table(first.stdout)
    assert set(rows) == {"dense", "sparse", "hybrid"}, first.stdout
    assert all(values == (EXPECTED,) * 3 for values in rows.values()), first.stdout
    assert "evaluated 6 queries of golden.jsonl on 'topics'" in first.stdout
    assert "worst queries (hybrid):" in first.stdout and "q6: nDCG@10 0.0000" in first.stdout

    # a deliberately worse setting (a reranker that reverses rankings): lower, and compared with the last run
    worse = ragline(
        data, "eval", str(golden), "--kb", "topics", "--modes", "hybrid,hybrid_rerank", "--label", "reversed", "--json",
        RAGLINE_RERANKER="tests.evaluation.corpus:reversing",
    )  # fmt: skip
    assert worse.returncode == 0, worse.stderr
    stored = json.loads(worse.stdout)
    by_mode = {m["mode"]: m for m in stored["modes"]}
    assert by_mode["hybrid_rerank"]["ndcg_at_10"] < by_mode["hybrid"]["ndcg_at_10"] == EXPECTED
    assert stored["label"] == "reversed" and stored["previous_id"] and stored["delta"]["hybrid"]["ndcg_at_10"] == 0.0

    missing = ragline(data, "eval", str(golden), "--kb", "nope")
    assert missing.returncode == 1 and "no knowledge base named 'nope'" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "x"}\n')
    refused = ragline(data, "eval", str(bad), "--kb", "topics")
    assert refused.returncode == 1 and "'files' or 'chunks'" in refused.stderr

"""Process environment that must be in place before numpy, torch, tiktoken or litellm are imported.

Why here: ``engine/__init__`` imports this module first, so every entry point (server, CLI, tests,
benchmarks) gets the same offline, thread-limited environment without remembering to call anything.
Only ``setdefault`` is used, so an operator's explicit environment always wins.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def _bundled_tiktoken_dir() -> str | None:
    # litellm ships the cl100k/o200k BPE files named by tiktoken's cache key; tiktoken would
    # otherwise download them on first use, which fails on an offline machine.
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return str(path) if path.is_dir() else None


def configure_process_env() -> None:
    """Set offline flags and BLAS thread counts; idempotent."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # OpenBLAS worker threads keep spinning after a numpy matmul and fight torch for the cores:
    # 56 ms instead of 8 ms per query embedding on 2 cores (stack-findings §8).
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        bundled = _bundled_tiktoken_dir()
        if bundled:
            os.environ["TIKTOKEN_CACHE_DIR"] = bundled
            os.environ.setdefault("CUSTOM_TIKTOKEN_CACHE_DIR", bundled)

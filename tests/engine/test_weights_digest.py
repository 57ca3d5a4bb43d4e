"""The weights digest behind the ONNX export's cache key: remembered across starts, recomputed when the file changes."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.embedders.onnx_export import export_key, weights_sha256

_opened: list[str] = []
_watching = threading.Event()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watching.is_set() and event == "open" and str(args[0]).endswith("model.safetensors"):
        _opened.append(str(args[0]))


sys.addaudithook(_audit)


def reads_of_weights(model_dir: Path, cache: Path | None) -> tuple[str, int]:
    """The digest, and how many times the weights file was opened to get it."""
    _opened.clear()
    _watching.set()
    try:
        digest = weights_sha256(model_dir, cache)
    finally:
        _watching.clear()
    return digest, len(_opened)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "model.safetensors").write_bytes(b"weights-a" * 1000)
    return directory


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_start_after_the_first_reads_no_weights(model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    expected = sha256_of(model_dir / "model.safetensors")

    assert reads_of_weights(model_dir, cache) == (expected, 1)
    assert reads_of_weights(model_dir, cache) == (expected, 0)
    assert reads_of_weights(model_dir, None) == (expected, 1)  # without a cache: read every time


def test_weights_rewritten_in_place_with_their_old_times_are_hashed_again(model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    weights = model_dir / "model.safetensors"
    before = weights_sha256(model_dir, cache)
    times = weights.stat()

    weights.write_bytes(b"weights-b" * 1000)  # same size, same inode
    os.utime(weights, ns=(times.st_atime_ns, times.st_mtime_ns))  # only the change time tells

    assert weights_sha256(model_dir, cache) == sha256_of(weights) != before


def test_weights_replaced_by_another_file_are_hashed_again(model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    weights = model_dir / "model.safetensors"
    before = export_key(model_dir, cache)
    replacement = model_dir / "new.safetensors"
    replacement.write_bytes(b"weights-c" * 1000)
    replacement.replace(weights)  # as a package upgrade does

    assert weights_sha256(model_dir, cache) == sha256_of(weights)
    assert export_key(model_dir, cache) != before


def test_a_damaged_or_unwritable_cache_still_gives_the_right_digest(model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    expected = sha256_of(model_dir / "model.safetensors")
    weights_sha256(model_dir, cache)
    for record in cache.glob(".weights-*.json"):
        record.write_text('{"identity": [1, 2')  # cut short

    assert reads_of_weights(model_dir, cache) == (expected, 1)
    assert reads_of_weights(model_dir, cache) == (expected, 0)  # the record was written again
    assert weights_sha256(model_dir, tmp_path / "missing") == expected  # nowhere to remember it: read each time

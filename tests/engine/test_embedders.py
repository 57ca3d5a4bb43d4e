"""The int8 ONNX embedder: offline export from the bundled weights, cache behaviour, fidelity to fp32."""

from __future__ import annotations

import math
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.embedders import create_embedder
from engine.embedders.onnx_export import ensure_exported, export_key
from engine.embedders.onnx_int8 import OnnxInt8Embedder, length_batches
from engine.embedders.sentence_transformer import bundled_model_path
from engine.ports import Embedder
from engine.settings import Settings

# One-token inputs carry the most int8 error (cosine ~0.98 to fp32): checked separately, looser.
DEGENERATE = ["", "x", "hi"]
VARIED = [
    "How do plants turn sunlight into chemical energy?",
    "Photosynthesis converts light energy into chemical energy stored in glucose, inside chloroplasts.",
    "def add(a, b):\n    return a + b  # sums two numbers",
    "Prix: 12,50 € — Café au lait, naïve façade; 日本語のテキスト; Ελληνικά; emoji 🚀",
    "Table 3: IC50 = 4.2 ± 0.3 nM (n=12, p<0.001); HbA1c fell from 8.1% to 6.9%.",
    " ".join(["The quarterly report discusses revenue growth, churn and hiring plans."] * 40),  # > 256 pieces
]

_network_events: list[str] = []
_recording = threading.Event()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _recording.is_set() and event in ("socket.connect", "socket.getaddrinfo"):
        _network_events.append(f"{event} {args!r}")


sys.addaudithook(_audit)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def export_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Export once for the module, from two threads at once, with a crashed export's leftovers present."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    key = export_key(bundled_model_path())
    stale = cache / f".tmp-{key}-crashed"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half-written")
    results: list[Path] = []
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            results.append(ensure_exported(bundled_model_path(), cache))
        except BaseException as exc:  # surfaced by the tests below
            errors.append(exc)

    _recording.set()
    try:
        threads = [threading.Thread(target=first_use) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        embedder = OnnxInt8Embedder(cache, threads=1)
        embedder.warm_up()
    finally:
        _recording.clear()
    network = list(_network_events)
    return {"cache": cache, "results": results, "errors": errors, "embedder": embedder, "network": network}


@pytest.fixture(scope="module")
def int8(export_run: dict[str, Any]) -> OnnxInt8Embedder:
    embedder: OnnxInt8Embedder = export_run["embedder"]
    return embedder


def test_length_batches_cover_every_index_once_and_respect_limits() -> None:
    lengths = [5, 250, 12, 12, 90, 3, 256, 40, 41, 7, 200, 1]
    batches = length_batches(lengths, batch_size=3, max_batch_tokens=520)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    widths = [lengths[batch[0]] for batch in batches]
    assert widths == sorted(widths, reverse=True)  # longest first, so each batch is padded to its first text
    for batch in batches:
        assert len(batch) <= 3
        assert lengths[batch[0]] * len(batch) <= 520 or len(batch) == 1
        assert all(lengths[i] <= lengths[batch[0]] for i in batch)


def test_export_key_follows_the_source_weights(tmp_path: Path) -> None:
    for name, payload in (("a", b"weights-one"), ("b", b"weights-one"), ("c", b"weights-two")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(payload)
    assert export_key(tmp_path / "a") == export_key(tmp_path / "b")
    assert export_key(tmp_path / "a") != export_key(tmp_path / "c")


def test_factory_builds_the_int8_embedder_lazily(tmp_path: Path) -> None:
    settings = Settings(
        embedder="minilm-onnx-int8", data_dir=tmp_path, model_cache_dir=tmp_path / "cache", torch_threads=1
    )
    assert Settings().embedder == "minilm-onnx-int8"  # the default
    embedder = create_embedder(settings)
    assert isinstance(embedder, OnnxInt8Embedder)
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dim, embedder.max_tokens) == ("all-MiniLM-L6-v2", 384, 256)
    assert not (tmp_path / "cache").exists()  # nothing exported until first use


@pytest.mark.slow
def test_concurrent_first_use_exports_once_offline(export_run: dict[str, Any]) -> None:
    assert export_run["errors"] == []
    first, second = export_run["results"]
    assert first == second and first.is_file()
    cache: Path = export_run["cache"]
    exports = [p.name for p in cache.iterdir() if p.is_dir()]
    assert exports == [first.parent.name]  # the crashed leftover is gone, no temp dir remains
    assert export_run["network"] == []  # export and load touched no socket


@pytest.mark.slow
def test_second_construction_reuses_the_export(int8: OnnxInt8Embedder, export_run: dict[str, Any]) -> None:
    model_file = int8.model_file
    before = os.stat(model_file).st_mtime_ns
    again = OnnxInt8Embedder(export_run["cache"], threads=1)
    again.warm_up()
    assert again.model_file == model_file
    assert os.stat(model_file).st_mtime_ns == before


@pytest.mark.slow
@pytest.mark.anyio
async def test_vectors_are_unit_length_and_close_to_fp32(int8: OnnxInt8Embedder, embedder: Any) -> None:
    fast = await int8.embed_documents(VARIED)
    reference = await embedder.embed_documents(VARIED)
    for text, vector, ref in zip(VARIED, fast, reference, strict=True):
        assert len(vector) == 384
        assert math.isclose(math.sqrt(cosine(vector, vector)), 1.0, abs_tol=1e-4)
        assert cosine(vector, ref) >= 0.99, text[:40]
    query = await int8.embed_query(VARIED[0])
    assert cosine(query, await embedder.embed_query(VARIED[0])) >= 0.99


@pytest.mark.slow
@pytest.mark.anyio
async def test_one_token_inputs_stay_usable(int8: OnnxInt8Embedder, embedder: Any) -> None:
    fast = await int8.embed_documents(DEGENERATE)
    reference = await embedder.embed_documents(DEGENERATE)
    for vector, ref in zip(fast, reference, strict=True):
        assert math.isclose(math.sqrt(cosine(vector, vector)), 1.0, abs_tol=1e-4)
        assert cosine(vector, ref) >= 0.97


@pytest.mark.slow
@pytest.mark.anyio
async def test_relevant_text_ranks_above_unrelated(int8: OnnxInt8Embedder) -> None:
    query = await int8.embed_query("How do plants make energy from sunlight?")
    relevant, unrelated = await int8.embed_documents(
        [
            "Photosynthesis converts light energy into chemical energy in the chloroplasts of leaves.",
            "The stock market closed lower on Friday after fears about interest rates.",
        ]
    )
    assert cosine(query, relevant) > cosine(query, unrelated) + 0.2


@pytest.mark.slow
@pytest.mark.anyio
async def test_bucketed_batches_keep_input_order(int8: OnnxInt8Embedder) -> None:
    # lengths deliberately interleaved so sorting by length reorders them
    texts = [VARIED[5], "cats and dogs", VARIED[1], "Quantum chromodynamics", VARIED[4], VARIED[3], VARIED[2]]
    batched = await int8.embed_documents(texts)
    one_by_one = [await int8.embed_query(text) for text in texts]
    for i, vector in enumerate(batched):
        similarities = [cosine(vector, single) for single in one_by_one]
        assert max(range(len(texts)), key=similarities.__getitem__) == i
        # not 1.0: dynamic int8 scales activations per batch, so batch-mates nudge each other slightly
        assert similarities[i] >= 0.98

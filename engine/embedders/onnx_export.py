"""Export all-MiniLM-L6-v2 to one int8 ONNX file, once per machine, into a cache keyed by weights and recipe."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.embedders.onnx_rewrites import unfuse_skip_layer_norms

# Bump when the export recipe changes: the cache key includes it, so old exports are not reused.
RECIPE_VERSION = "3"  # 3: SkipLayerNormalization unfused (onnx_rewrites)
MODEL_FILE = "model.onnx"
META_FILE = "meta.json"
# MiniLM-L6 geometry, needed by onnxruntime's fusion passes.
_NUM_HEADS = 12
_HIDDEN = 384
# the export says what it does in one line of its own; these libraries' log lines, warnings and progress bars
# (hundreds of fusion and quantiser lines at INFO) stay out of the server's output
log = logging.getLogger("ragline")
_EXPORT_LIBRARIES = ("onnxruntime", "onnx", "torch", "transformers")


def weights_sha256(model_dir: Path, remember_in: Path | None = None) -> str:
    """sha256 of the source weights file (the export cache is keyed by it).

    With ``remember_in``, the digest is kept there beside the file's identity (device, inode, size, modification
    and change times) and reused while that identity holds: a start then reads none of the 90 MB of weights, which
    on a cold page cache (a new container, a reboot) cost more than the rest of loading the model. Any write to the
    file changes its change time, which no one can set back, so a changed file is hashed again.
    """
    weights = model_dir / "model.safetensors"
    identity = _identity(weights)
    record = None if remember_in is None else remember_in / f".weights-{_path_key(weights)}.json"
    if record is not None:
        with contextlib.suppress(OSError, ValueError):
            kept = json.loads(record.read_text())
            if kept.get("identity") == identity:
                return str(kept["sha256"])
    digest = hashlib.sha256()
    with weights.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    sha256 = digest.hexdigest()
    if record is not None and _identity(weights) == identity:  # not rewritten while we read it
        _write_atomically(record, json.dumps({"identity": identity, "sha256": sha256}))
    return sha256


def _identity(weights: Path) -> list[int]:
    status = weights.stat()
    return [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns]


def _path_key(weights: Path) -> str:
    return hashlib.sha256(str(weights.resolve()).encode()).hexdigest()[:16]


def _write_atomically(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` by rename (a reader never sees half of it); a cache that cannot be written to
    only costs the next start a re-hash."""
    with contextlib.suppress(OSError):
        handle, temporary = tempfile.mkstemp(prefix=target.name, dir=target.parent)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(text)
            os.chmod(temporary, 0o644)  # mkstemp makes it owner-only; the cache may be shared by service users
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def export_key(model_dir: Path, cache_dir: Path | None = None) -> str:
    """Cache key: source weights + export recipe + onnxruntime version (its quantiser writes the model); the
    weights' digest is remembered in ``cache_dir`` when given (see ``weights_sha256``)."""
    import onnxruntime

    material = f"{weights_sha256(model_dir, cache_dir)}|recipe={RECIPE_VERSION}|ort={onnxruntime.__version__}"
    return hashlib.sha256(material.encode()).hexdigest()[:20]


def ensure_exported(model_dir: Path, cache_dir: Path) -> Path:
    """Return the quantised ONNX model for ``model_dir``, exporting it into ``cache_dir`` if missing.

    The export is written into a temporary directory and renamed into place, so a crash never leaves a
    half-written model behind; a per-key file lock makes concurrent first uses (threads or processes)
    wait for one export instead of racing.

    Args:
        model_dir: sentence-transformers directory with ``model.safetensors`` and the tokenizer files.
        cache_dir: where exports live (created if missing).

    Returns:
        Path of ``model.onnx`` inside ``cache_dir/all-MiniLM-L6-v2-int8-<key>/``.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = export_key(model_dir, cache_dir)
    final = cache_dir / f"all-MiniLM-L6-v2-int8-{key}"
    if (final / META_FILE).is_file():
        return final / MODEL_FILE
    with _file_lock(cache_dir / f".{key}.lock"):
        if (final / META_FILE).is_file():  # another process finished while we waited
            return final / MODEL_FILE
        for stale in cache_dir.glob(f".tmp-{key}-*"):  # left by a crashed exporter: we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        log.info("exporting the embedding model to int8 ONNX (once per machine, ~20 s) into %s…", cache_dir)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cache_dir))
        try:
            work.chmod(0o755)  # mkdtemp makes it owner-only; the cache may be shared by service users
            with _quiet_libraries():
                export_model(model_dir, work / MODEL_FILE)
            meta = {"key": key, "source_sha256": weights_sha256(model_dir, cache_dir), "recipe": RECIPE_VERSION}
            (work / META_FILE).write_text(json.dumps(meta))
            work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("…exported the embedding model in %.1f s", time.monotonic() - started)
    return final / MODEL_FILE


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is exporting the embedding model…")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _LibraryRecords(logging.Filter):
    """Drops the export libraries' own log records below ERROR (by the file that logged them)."""

    def __init__(self) -> None:
        super().__init__()
        self._dirs = tuple(f"{os.sep}{name}{os.sep}" for name in _EXPORT_LIBRARIES)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not any(d in record.pathname for d in self._dirs)


class _ToLastResort(logging.Handler):
    """Stands in for "no handler" (what ``logging.lastResort`` serves) while a filter needs a handler to sit on."""

    def emit(self, record: logging.LogRecord) -> None:
        last = logging.lastResort
        if last is not None and record.levelno >= last.level:
            last.handle(record)


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Keep onnxruntime's, onnx's, torch's and transformers' log lines and progress bars out of the output.

    Their loggers log to the root logger's handlers (onnxruntime's quantiser calls ``logging.info`` itself, which
    would also ``basicConfig`` a root logger without handlers): the filter sits on the root logger and its
    handlers for the duration of the export, so other code's records pass as before. Errors still show.
    """
    from transformers.utils import logging as transformers_logging

    hf_logging: Any = transformers_logging  # untyped
    quiet, root = _LibraryRecords(), logging.getLogger()
    stand_in = _ToLastResort() if not root.handlers else None
    if stand_in is not None:
        root.addHandler(stand_in)
    filtered = [root, *root.handlers]
    for target in filtered:
        target.addFilter(quiet)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights: 100%|████|"
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        for target in filtered:
            target.removeFilter(quiet)
        if stand_in is not None:
            root.removeHandler(stand_in)


def export_model(model_dir: Path, target: Path, *, int8: bool = True, fused_layer_norm: bool = False) -> None:
    """Export ``model_dir`` to one ONNX file: fp32 trace -> BERT fusions, less the slow one -> (optionally) int8.

    Args:
        model_dir: sentence-transformers directory with ``model.safetensors``.
        target: the ONNX file to write (intermediate files go next to it and are removed).
        int8: quantise the weights (the fused fp32 model is kept for comparisons when False).
        fused_layer_norm: keep onnxruntime's SkipLayerNormalization (recipe 2), for comparisons.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    raw, fused = target.with_suffix(".raw.onnx"), target.with_suffix(".fused.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow that is constant here
        _export_fp32(model_dir, raw)
    optimized = optimize_model(str(raw), model_type="bert", num_heads=_NUM_HEADS, hidden_size=_HIDDEN, opt_level=1)
    raw.unlink()
    if not fused_layer_norm:
        unfuse_skip_layer_norms(optimized.model)
    if not int8:
        optimized.save_model_to_file(str(target))
        return
    optimized.save_model_to_file(str(fused))
    quantize_dynamic(
        str(fused),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=_fp32_nodes(fused),
        # fused ops (com.microsoft domain) defeat shape inference; every tensor here is float32
        extra_options={"DefaultTensorType": 1},
    )
    fused.unlink()


def _fp32_nodes(model_file: Path) -> list[str]:
    """MatMuls kept in fp32: the first layer's FFN down-projection, whose post-GELU input has the worst outliers.

    On this 2-core AVX (no AVX2) CPU an fp32 MatMul costs 2.7x an int8 one per multiply: keeping all six FFN
    down-projections fp32 (recipe 1) spent half of a query's 4 ms there. Measured on 300 SciFact queries against
    the fp32 model (mean / min cosine, ms per 21-token query): all six fp32 0.9966 / 0.991, 3.75-3.98 ms; none
    0.9936 / 0.980, 2.58-2.69 ms, SciFact test hybrid nDCG@10 0.7312; only layer 0's (the largest single share
    of the error) 0.9950 / 0.988, 2.90 ms, nDCG@10 0.7341 (recipe 1: 0.7333).
    """
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and _is_ffn_down(n.name, layer=0)]


def _is_ffn_down(node_name: str, *, layer: int) -> bool:
    return f"/layer.{layer}/output/dense/" in node_name


def _export_fp32(model_dir: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel

    # eager attention exports the plain MatMul/Softmax pattern that onnxruntime fuses into Attention
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    example = torch.ones(2, 8, dtype=torch.long)
    dynamic = {0: "batch", 1: "sequence"}
    with torch.inference_mode():
        torch.onnx.export(
            MeanPooled().eval(),
            (example, example),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )

"""Embedders from models on disk (``sentence-transformers:/dir``, ``onnx:/dir``): dimension read from the model,
the ``Embedder`` contract, and the ONNX paths agreeing with sentence-transformers on the same weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.embedders import EmbedderCatalog, create_embedder
from engine.embedders.local import LocalSentenceTransformerEmbedder, OnnxDirEmbedder, st_dimension
from engine.errors import InvalidInput
from engine.ports import Embedder
from engine.settings import Settings
from tests.helpers.tiny_models import tiny_models

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
TEXTS = ["Llamas graze in the Andes.", "ok", "Tides follow the moon. " * 60, "Привет, мир", "The harbour closed."]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def models() -> dict[str, Path]:
    return tiny_models()


def settings_for(models: dict[str, Path]) -> Settings:
    named = [f"tiny={'sentence-transformers:' + str(models['st'])}", f"tiny-onnx=onnx:{models['onnx']}",
             f"tiny-tokens=onnx:{models['onnx-tokens']}", f"plain=sentence-transformers:{models['plain']}"]
    return Settings.from_env({}, torch_threads=1, embedders=tuple(named))


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


async def test_the_dimension_and_window_come_from_the_model(models: dict[str, Path]) -> None:
    assert st_dimension(models["st"]) == 128 and st_dimension(models["plain"]) == 384
    st = create_embedder(settings_for(models), "tiny")
    assert isinstance(st, LocalSentenceTransformerEmbedder) and (st.dim, st.max_tokens) == (128, 256)
    assert st.name == "sentence-transformers:st"
    for name in ("tiny-onnx", "tiny-tokens"):
        onnx = create_embedder(settings_for(models), name)
        assert isinstance(onnx, OnnxDirEmbedder) and (onnx.dim, onnx.max_tokens) == (384, 256)
    with pytest.raises(ValueError, match="no model at"):
        create_embedder(settings_for(models), "onnx:/nonexistent/model")
    with pytest.raises(ValueError, match="not a sentence-transformers model directory"):
        create_embedder(settings_for(models), f"sentence-transformers:{models['onnx']}")


@pytest.mark.parametrize("name", ["tiny", "tiny-onnx", "tiny-tokens"])
async def test_the_embedder_contract(models: dict[str, Path], name: str) -> None:
    embedder: Embedder = create_embedder(settings_for(models), name)
    vectors = await embedder.embed_documents(TEXTS)
    assert len(vectors) == len(TEXTS) and all(len(v) == embedder.dim for v in vectors)
    assert all(math.isclose(float(np.linalg.norm(v)), 1.0, abs_tol=1e-4) for v in vectors)
    alone = [await embedder.embed_documents([text]) for text in TEXTS]
    assert all(cosine(v, a[0]) > 0.999 for v, a in zip(vectors, alone, strict=True))  # fp32: batch-invariant
    assert cosine(await embedder.embed_query(TEXTS[0]), vectors[0]) > 0.999
    assert embedder.token_count(TEXTS[2]) > embedder.max_tokens  # counts do not stop at the window
    assert await embedder.embed_documents([]) == []


async def test_onnx_exports_agree_with_sentence_transformers(models: dict[str, Path]) -> None:
    settings = settings_for(models)
    reference = await create_embedder(settings, "plain").embed_documents(TEXTS)
    for name in ("tiny-onnx", "tiny-tokens"):
        vectors = await create_embedder(settings, name).embed_documents(TEXTS)
        assert min(cosine(a, b) for a, b in zip(reference, vectors, strict=True)) > 0.999, name


async def test_the_catalog_offers_names_never_paths(models: dict[str, Path], embedder: Embedder) -> None:
    catalog = EmbedderCatalog(settings_for(models), embedder)
    assert catalog.names()[:2] == ["minilm-onnx-int8", "minilm"] and "tiny" in catalog.names()
    assert catalog.get("minilm-onnx-int8") is embedder and catalog.get("tiny") is catalog.get("tiny")
    for refused in (f"sentence-transformers:{models['st']}", "onnx:/etc", "bm42"):
        with pytest.raises(InvalidInput, match="unknown embedder"):
            catalog.get(refused)
    broken = EmbedderCatalog(Settings.from_env({}, embedders=("gone=onnx:/nonexistent",)), embedder)
    with pytest.raises(InvalidInput, match="cannot be used"):
        broken.get("gone")


def test_a_model_on_disk_as_the_server_wide_embedder(models: dict[str, Path], tmp_path: Path) -> None:
    """RAGLINE_EMBEDDER=sentence-transformers:/dir: a 128-d store, ingest, search and evaluation all on it."""
    from tests.api.conftest import make_settings, open_api
    from tests.evaluation.corpus import DOCS, GOLDEN

    settings = make_settings(tmp_path / "data", embedder=f"sentence-transformers:{models['st']}")
    with open_api(settings, None) as api:
        assert api.services.embedder.dim == 128 and api.services.embedder.name == "sentence-transformers:st"
        kb = api.create_kb("topics")
        for name, text in DOCS.items():
            file_id = api.upload(kb, name, text.encode()).json()["data"]["id"]
            assert api.wait_ingested(kb, file_id)["status"] == "ready"
        assert api.search("llama wool", kb_ids=[kb], top_k=1, mode="hybrid")[0]["file_name"] == "llamas.md"
        run = api.request("POST", f"/api/v1/knowledge-bases/{kb}/evaluations", json={"queries": GOLDEN})
        assert run.status_code == 201, run.text
        config = run.json()["data"]["config"]
        assert config["dim"] == 128 and config["embedder"].startswith("sentence-transformers:")

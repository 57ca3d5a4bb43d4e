"""Evaluation per knowledge base through the API: golden sets, known metrics in every mode, a worse setting
scoring lower, the history with its deltas, audit entries and refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Api, make_settings, open_api
from tests.evaluation.corpus import DOCS, EXPECTED, GOLDEN, golden_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[tuple[Api, str]]:
    """An app whose reranker is deliberately bad (it reverses rankings), with the six documents ingested."""
    settings = make_settings(tmp_path_factory.mktemp("eval") / "data", reranker="tests.evaluation.corpus:reversing")
    with open_api(settings, embedder) as api:
        kb = api.create_kb("topics")
        for name, text in DOCS.items():
            file_id = api.upload(kb, name, text.encode()).json()["data"]["id"]
            assert api.wait_ingested(kb, file_id)["status"] == "ready"
        yield api, kb


def modes(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mode"]: m for m in evaluation["modes"]}


def test_a_golden_set_gets_the_expected_metrics_and_the_worse_setting_scores_lower(world: tuple[Api, str]) -> None:
    api, kb = world
    made = api.request("POST", f"/api/v1/knowledge-bases/{kb}/golden-sets", json={"name": "topics", "queries": GOLDEN})
    assert made.status_code == 201, made.text
    golden = made.json()["data"]
    assert golden["query_count"] == 6 and golden["queries"][1]["files"] == {"tides.md": 2}

    run = api.request("POST", f"/api/v1/knowledge-bases/{kb}/evaluations", json={"golden_set_id": golden["id"]})
    assert run.status_code == 201, run.text
    evaluation = run.json()["data"]
    assert evaluation["status"] == "succeeded" and evaluation["queries"] == 6 and evaluation["recall_k"] == 10
    assert evaluation["golden_set_name"] == "topics" and evaluation["previous_id"] is None
    assert evaluation["config"]["modes"] == ["dense", "sparse", "hybrid", "hybrid_rerank"]
    assert evaluation["config"]["chunk_tokens"] == 200 and evaluation["config"]["embedder"]
    by_mode = modes(evaluation)
    for name in ("dense", "sparse", "hybrid"):
        result = by_mode[name]
        assert (result["ndcg_at_10"], result["recall_at_k"], result["mrr_at_10"]) == (EXPECTED,) * 3, result
        assert result["queries"] == 6 and result["latency_p50_ms"] > 0
        worst = result["worst"]
        assert [q["id"] for q in worst] == ["q6"] and worst[0]["expected"] == ["pompeii-guide.md"]
        assert worst[0]["first_relevant_rank"] is None
        assert len(worst[0]["retrieved"]) == (0 if name == "sparse" else 5)  # BM25: no word of q6 is in the KB
    # the reversing reranker: the same files are found (recall), but the relevant one comes last
    worse = by_mode["hybrid_rerank"]
    assert worse["recall_at_k"] == EXPECTED
    assert worse["ndcg_at_10"] < by_mode["hybrid"]["ndcg_at_10"] - 0.3
    assert worse["mrr_at_10"] < by_mode["hybrid"]["mrr_at_10"] - 0.5

    # history: newest first; a second run of the same set is compared with the first
    again = api.request(
        "POST", f"/api/v1/knowledge-bases/{kb}/evaluations",
        json={"golden_set_id": golden["id"], "modes": ["hybrid", "sparse"], "label": "same settings"},
    ).json()["data"]  # fmt: skip
    assert again["previous_id"] == evaluation["id"] and again["label"] == "same settings"
    assert again["delta"] == {"hybrid": dict.fromkeys(("ndcg_at_10", "recall_at_k", "mrr_at_10"), 0.0),
                              "sparse": dict.fromkeys(("ndcg_at_10", "recall_at_k", "mrr_at_10"), 0.0)}
    listed = api.request("GET", f"/api/v1/knowledge-bases/{kb}/evaluations")
    assert [e["id"] for e in listed.json()["data"]][:2] == [again["id"], evaluation["id"]]
    fetched = api.request("GET", f"/api/v1/knowledge-bases/{kb}/evaluations/{evaluation['id']}").json()["data"]
    assert modes(fetched) == by_mode
    audit = api.request("GET", "/api/v1/audit", params={"action": "evaluation.create"}).json()["data"]
    assert {a["resource_id"] for a in audit} >= {evaluation["id"], again["id"]}


def test_uploaded_jsonl_inline_queries_and_chunk_judgments(world: tuple[Api, str], tmp_path: Path) -> None:
    api, kb = world
    path = golden_jsonl(tmp_path / "golden.jsonl")
    files = {"file": ("golden.jsonl", path.read_bytes())}
    uploaded = api.request("POST", f"/api/v1/knowledge-bases/{kb}/golden-sets/upload", files=files)
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["data"]["name"] == "golden" and uploaded.json()["data"]["query_count"] == 6
    twice = api.request("POST", f"/api/v1/knowledge-bases/{kb}/golden-sets/upload", files=files)
    assert twice.status_code == 409, twice.text

    hit = api.search("waggle dance direction", kb_ids=[kb], top_k=1)[0]
    inline = {"queries": [{"query": "waggle dance of the hive", "chunks": {hit["chunk_id"]: 1}}], "modes": ["hybrid"]}
    run = api.request("POST", f"/api/v1/knowledge-bases/{kb}/evaluations", json=inline)
    assert run.status_code == 201, run.text
    result = modes(run.json()["data"])["hybrid"]
    assert (result["ndcg_at_10"], result["mrr_at_10"]) == (1.0, 1.0)
    assert run.json()["data"]["golden_set_name"] == "inline"

    sets = api.request("GET", f"/api/v1/knowledge-bases/{kb}/golden-sets").json()["data"]
    assert "golden" in {s["name"] for s in sets} and all(s["queries"] is None for s in sets)
    gid = uploaded.json()["data"]["id"]
    renamed = api.request("PATCH", f"/api/v1/knowledge-bases/{kb}/golden-sets/{gid}",
                          json={"name": "golden-2", "queries": GOLDEN[:2]})  # fmt: skip
    assert renamed.status_code == 200 and renamed.json()["data"]["query_count"] == 2
    assert api.request("DELETE", f"/api/v1/knowledge-bases/{kb}/golden-sets/{gid}").status_code == 200
    assert api.request("GET", f"/api/v1/knowledge-bases/{kb}/golden-sets/{gid}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},  # neither a golden set nor queries
        {"golden_set_id": "gs_missing"},
        {"queries": [{"query": "x"}]},
        {"queries": [{"query": "x", "files": {"a.md": 0}}]},
        {"queries": [{"query": "x", "files": ["a.md"]}], "recall_k": 0},
        {"queries": [{"query": "x", "files": ["a.md"]}], "recall_k": 1000},  # beyond RAGLINE_SEARCH_MAX_TOP_K
        {"queries": [{"query": "x", "files": ["a.md"]}], "modes": ["bm42"]},
        {"queries": [], "modes": ["hybrid"]},
    ],
)
def test_bad_evaluation_requests_are_4xx(world: tuple[Api, str], body: dict[str, Any]) -> None:
    api, kb = world
    response = api.request("POST", f"/api/v1/knowledge-bases/{kb}/evaluations", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["data"] is None and response.json()["message"]


def test_bad_golden_set_uploads_are_4xx(world: tuple[Api, str]) -> None:
    api, kb = world
    url = f"/api/v1/knowledge-bases/{kb}/golden-sets/upload"
    for data in (b"not json at all", b'{"query": "x", "files": {"a": "high"}}', b"\xff\xfe"):
        response = api.request("POST", url, files={"file": ("g.jsonl", data)}, data={"name": "bad"})
        assert 400 <= response.status_code < 500, response.text
    assert api.request("POST", url, json={"name": "x"}).status_code == 415
    other = api.request("POST", "/api/v1/knowledge-bases/kb_unknown/evaluations", json={"queries": GOLDEN})
    assert other.status_code == 404

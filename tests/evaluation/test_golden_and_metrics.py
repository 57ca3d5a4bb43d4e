"""Golden sets parse from JSON, JSONL and API bodies with clear refusals; metrics are trec_eval's definitions."""

from __future__ import annotations

import json
import math

import pytest

from engine.errors import InvalidInput
from engine.evaluation import parse_golden, parse_golden_items
from engine.evaluation.golden import golden_to_builtins
from engine.evaluation.metrics import score
from tests.evaluation.corpus import GOLDEN


def test_jsonl_json_array_and_object_forms_parse_alike() -> None:
    jsonl = "".join(json.dumps(item) + "\n\n" for item in GOLDEN).encode()
    as_array = json.dumps(GOLDEN).encode()
    as_object = json.dumps({"queries": GOLDEN}).encode()
    parsed = [parse_golden(data) for data in (jsonl, as_array, as_object, b"\xef\xbb\xbf" + jsonl)]
    assert all(p == parsed[0] for p in parsed)
    first = parsed[0][0]
    assert first.id == "q1" and first.files == {"llamas.md": 1} and first.level == "file"
    assert parsed[0][1].files == {"tides.md": 2}
    assert golden_to_builtins(parsed[0])[1] == {"id": "q2", "query": GOLDEN[1]["query"], "files": {"tides.md": 2}}


def test_ids_default_to_positions_and_chunks_judge_chunks() -> None:
    queries = parse_golden_items([{"query": "a", "files": ["x.md"]}, {"query": "b", "chunks": {"c-1": 3, "c-2": 0}}])
    assert [q.id for q in queries] == ["q1", "q2"]
    assert queries[1].level == "chunk" and queries[1].judgments == {"c-1": 3, "c-2": 0}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b'{"query": "x"}', "'files' or 'chunks'"),
        (b'{"query": "x", "files": ["a"], "chunks": ["b"]}', "'files' or 'chunks'"),
        (b'{"query": "x", "files": {"a": 0}}', "above 0"),
        (b'{"query": "x", "files": {"a": -1}}', "integer from 0"),
        (b'{"query": "x", "files": {"a": true}}', "integer from 0"),
        (b'{"query": "", "files": ["a"]}', "'query'"),
        (b'{"query": "x", "files": []}', "non-empty"),
        (b'{"query": "x", "files": ["a"], "extra": 1}', "unknown field"),
        (b'{"query": "x", "files": ["a"]}\nnot json\n', "line 2 is not JSON"),
        (b'{"id": "a", "query": "x", "files": ["a"]}\n{"id": "a", "query": "y", "files": ["b"]}', "twice"),
        (b"[1, 2]", "must be an object"),
        (b'{"queries": []}', "no queries"),
    ],
)
def test_malformed_golden_sets_are_refused_with_the_reason(data: bytes, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_golden(data)


def _ndcg(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """BEIR's definition written out: gain = grade, discount log2(rank + 1)."""
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(relevant.values(), reverse=True)[:k]))
    return dcg / ideal if ideal else 0.0


def test_metrics_are_the_textbook_definitions_in_the_given_order() -> None:
    qrels = {"a": {"d1": 2, "d2": 1, "d3": 0}, "b": {"x": 1}, "c": {"y": 1, "z": 1}, "d": {"w": 1}}
    # ties in trec_eval's own sort would reorder "d9" before "d1": positions must win
    runs = {"a": ["d2", "d9", "d1", "d2"], "b": [f"n{i}" for i in range(10)] + ["x"], "c": ["z"], "d": []}
    scores = score(qrels, runs, recall_k=3)
    assert scores["a"].ndcg == pytest.approx(_ndcg(["d2", "d9", "d1"], qrels["a"]))
    assert scores["a"].recall == 1.0 and scores["a"].mrr == 1.0 and scores["a"].first_relevant_rank == 1
    assert scores["b"].ndcg == 0.0 and scores["b"].mrr == 0.0 and scores["b"].first_relevant_rank == 11  # past 10
    assert scores["b"].recall == 0.0  # recall@3
    assert scores["c"].recall == 0.5 and scores["c"].mrr == 1.0
    assert scores["d"] == type(scores["d"])(ndcg=0.0, recall=0.0, mrr=0.0, first_relevant_rank=None)
    assert score({"e": {"p": 1}}, {}, recall_k=10)["e"].ndcg == 0.0  # a query without a run scores 0

"""Ranking metrics by trec_eval's own code (``pytrec_eval``): the definitions BEIR and MTEB report.

nDCG@10 uses the grade as gain (``ndcg_cut``); recall@k counts grades > 0 (``recall``); MRR@10 is trec_eval's
``recip_rank`` over the first 10 results. Runs are handed in as ranked lists: they are scored by descending
position, so trec_eval's tie-breaking by document name never reorders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
import pytrec_eval

NDCG_K = 10
MRR_K = 10


class QueryScores(msgspec.Struct, frozen=True, kw_only=True):
    ndcg: float
    recall: float
    mrr: float
    first_relevant_rank: int | None  # 1-based rank of the first result with a grade > 0 (None: not retrieved)


def score(
    qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Sequence[str]], *, recall_k: int
) -> dict[str, QueryScores]:
    """nDCG@10, recall@``recall_k`` and MRR@10 of every query in ``qrels`` (a missing run scores 0).

    Args:
        qrels: query id -> {document: grade}.
        runs: query id -> documents, best first (duplicates after the first are ignored).
        recall_k: the recall cutoff.
    """
    judged = {qid: {doc: int(grade) for doc, grade in rel.items()} for qid, rel in qrels.items()}
    ranked = {qid: _dedup(runs.get(qid, ())) for qid in judged}
    full = pytrec_eval.RelevanceEvaluator(judged, {f"ndcg_cut.{NDCG_K}", f"recall.{recall_k}"})
    top = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"})
    measured = full.evaluate({qid: _as_run(docs) for qid, docs in ranked.items()})
    reciprocal = top.evaluate({qid: _as_run(docs[:MRR_K]) for qid, docs in ranked.items()})
    out = {}
    for qid, docs in ranked.items():
        values = measured.get(qid, {})
        first = next((i for i, doc in enumerate(docs, 1) if judged[qid].get(doc, 0) > 0), None)
        out[qid] = QueryScores(
            ndcg=float(values.get(f"ndcg_cut_{NDCG_K}", 0.0)),
            recall=float(values.get(f"recall_{recall_k}", 0.0)),
            mrr=float(reciprocal.get(qid, {}).get("recip_rank", 0.0)),
            first_relevant_rank=first,
        )
    return out


def _dedup(docs: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(docs))


def _as_run(docs: Sequence[str]) -> dict[str, float]:
    # descending scores by position: trec_eval sorts by score, so the given order is kept exactly
    return {doc: float(len(docs) - i) for i, doc in enumerate(docs)}

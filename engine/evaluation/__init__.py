"""Retrieval evaluation: golden sets (queries with graded relevant files or chunks) scored per search mode.

``golden`` parses and checks golden sets (JSON, JSONL or API bodies); ``metrics`` scores ranked lists with
trec_eval's own code (``pytrec_eval``); ``runner`` runs a golden set through a ``Retriever`` in each mode and
reports nDCG@10, recall@k, MRR@10 and latency with the worst queries. The API (per knowledge base, with
history), the CLI (``ragline eval``) and the SciFact benchmark all call ``runner.evaluate``.
"""

from engine.evaluation.golden import GoldenQuery, parse_golden, parse_golden_items
from engine.evaluation.runner import DEFAULT_MODES, EvaluationReport, ModeReport, ModeSpec, evaluate, modes_for

__all__ = [
    "DEFAULT_MODES",
    "EvaluationReport",
    "GoldenQuery",
    "ModeReport",
    "ModeSpec",
    "evaluate",
    "modes_for",
    "parse_golden",
    "parse_golden_items",
]
